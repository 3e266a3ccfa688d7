// Package quality measures how far quantized weights are from the originals.
//
// A Stats accumulates, one value pair at a time or in slices, the numbers a
// release gate needs: relative RMSE (RMS of the error over RMS of the
// original), the largest absolute error and the cosine similarity between the
// original and the reconstructed tensor. Accumulation is in float64 so that
// tensors with hundreds of millions of elements do not lose precision, and two
// Stats can be merged, so that blocks quantized in parallel are reduced in any
// order to the same totals up to float64 rounding.
package quality
