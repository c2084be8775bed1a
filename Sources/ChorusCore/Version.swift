/// The version of Chorus and the git revision it was built from.
///
/// `package` is written here by hand at each release. The revision is baked in at build time
/// by `make build` (which runs `scripts/build-revision.sh` and compiles with
/// `-DCHORUS_BUILD_REVISION`): the script writes `BuildRevision.generated.swift` beside this
/// file (ignored by git, rewritten only when the revision changes). A plain `swift build` does
/// not define the flag, so it ignores any leftover generated file and reports "unknown" — a
/// build can say it does not know its revision, but never names a stale one.
public enum ChorusVersion {
    /// The package version (semantic versioning).
    public static let package = "0.1.0"

    /// The git revision of the build: 12 hex digits, "-dirty" appended when the tree had
    /// uncommitted changes; "unknown" for builds not made by `make` (or outside a git checkout).
    public static var revision: String { builtRevision ?? "unknown" }

    /// What `chorus --version` prints and every run directory records (run.json
    /// `chorus_version`): "0.1.0 (revision 035f3874a1b2)".
    public static var string: String { "\(package) (revision \(revision))" }
}

#if !CHORUS_BUILD_REVISION
extension ChorusVersion {
    /// No revision was baked in (a build without `make`).
    static let builtRevision: String? = nil
}
#endif
