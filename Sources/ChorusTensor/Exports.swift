// ChorusRNG and the other shared basics live in ChorusCore; every module that computes with
// tensors also draws from the RNG, so importing ChorusTensor brings them along.
@_exported import ChorusCore
