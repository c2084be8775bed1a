// OpenBLAS' cblas.h plus its thread-control entry points.
#include <cblas.h>
