// mslsim pass 1: an empty stand-in; the vector types come from mslsim_compat.h in pass 2.
