#!/usr/bin/env python3
"""Mutation testing: plant one-line bugs and check that the test suite catches each.

    python3 scripts/mutation_test.py [--mutations scripts/mutations.jsonl] [--only NAME ...]
                                     [--scratch DIR] [--timeout SECONDS] [--keep]

Each line of the mutations file is a JSON object:
    {"name": ..., "file": ..., "from": ..., "to": ..., "filter": ..., "why": ...}
`from` must occur exactly once in `file` (a substring of one line); it is replaced by `to`.
`filter` is the `swift test --filter` regex of the tests meant to catch it.

The working tree (tracked and untracked, non-ignored files, and the resolved dependency
checkouts under .build) is copied once to a scratch directory and built there; then each
mutation is applied, the tests rebuilt (incrementally) and the filter run, and the file restored. Nothing in the working tree changes.
A mutation is CAUGHT when the build succeeds and the filtered tests fail (or time out); it
SURVIVED when they pass; NO-BUILD when the mutant does not compile (a useless mutation, not a
catch); NOT-FOUND when `from` is not in the file exactly once (the source moved on: update the
line). The report is a Markdown table on stdout; the exit status is 1 unless all are caught.
Needs only Python 3 and the Swift toolchain; runs no network access.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, cwd, timeout=None):
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout, errors="replace")
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out


def copy_tree(src, dst):
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=src,
                           stdout=subprocess.PIPE, check=True).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        rel = f.decode()
        s, d = os.path.join(src, rel), os.path.join(dst, rel)
        if not os.path.isfile(s):
            continue   # deleted in the working tree
        os.makedirs(os.path.dirname(d), exist_ok=True)
        shutil.copy2(s, d)
    # The resolved dependency checkouts, so the scratch build needs no network. (Compiled
    # products cannot be reused: their module caches record absolute paths.)
    for name in ("checkouts", "repositories", "artifacts", "workspace-state.json"):
        s = os.path.join(src, ".build", name)
        if os.path.exists(s):
            os.makedirs(os.path.join(dst, ".build"), exist_ok=True)
            subprocess.run(["cp", "-a", s, os.path.join(dst, ".build", name)], check=True)


def failing_tests(output):
    names = []
    for line in output.splitlines():
        if line.startswith("Test Case '") and "' failed" in line:
            names.append(line.split("'")[1])
    return sorted(set(names))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutations", default=os.path.join(ROOT, "scripts", "mutations.jsonl"))
    ap.add_argument("--only", nargs="*", help="run only these mutation names")
    ap.add_argument("--scratch", help="scratch directory (default: a new one under $TMPDIR)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per test run (a timeout counts as caught)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()

    with open(args.mutations, encoding="utf-8") as f:
        mutations = [json.loads(l) for l in f if l.strip() and not l.lstrip().startswith("#")]
    if args.only:
        mutations = [m for m in mutations if m["name"] in args.only]
    if not mutations:
        sys.exit("no mutations to run")

    scratch = args.scratch or tempfile.mkdtemp(prefix="chorus-mutation-")
    print(f"scratch copy: {scratch}", file=sys.stderr)
    copy_tree(ROOT, scratch)
    swift = os.environ.get("SWIFT", "swift")
    rc, out = sh([swift, "build", "--build-tests"], scratch)
    if rc != 0:
        sys.exit("the unmutated tree does not build:\n" + out[-3000:])

    rows = []
    for m in mutations:
        path = os.path.join(scratch, m["file"])
        with open(path, encoding="utf-8") as f:
            original = f.read()
        n = original.count(m["from"])
        t0 = time.time()
        if n != 1:
            rows.append((m, "NOT-FOUND", f"`from` occurs {n} times", 0))
            continue
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original.replace(m["from"], m["to"]))
            rc, out = sh([swift, "build", "--build-tests"], scratch, timeout=args.timeout)
            if rc != 0:
                rows.append((m, "NO-BUILD", "mutant does not compile", time.time() - t0))
                continue
            rc, out = sh([swift, "test", "--skip-build", "--disable-swift-testing", "--filter", m["filter"]],
                         scratch, timeout=args.timeout)
            if rc is None:
                verdict, detail = "CAUGHT", "timed out"
            elif rc != 0:
                failed = failing_tests(out)
                verdict = "CAUGHT"
                detail = ", ".join(failed) if failed else f"exit {rc}"
            else:
                verdict, detail = "SURVIVED", "filtered tests pass"
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
        rows.append((m, verdict, detail, time.time() - t0))
        print(f"{m['name']}: {verdict} ({detail}) in {time.time() - t0:.0f}s", file=sys.stderr)

    print("| mutation | planted bug | file | filter | result | failing tests |")
    print("|---|---|---|---|---|---|")
    for m, verdict, detail, _ in rows:
        print(f"| {m['name']} | {m.get('why', '')} | {m['file']} | `{m['filter']}` | {verdict} | {detail} |")
    if not args.keep and not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(0 if all(v == "CAUGHT" for _, v, _, _ in rows) else 1)


if __name__ == "__main__":
    main()
