// Placeholder: training core lands with issue C.
