cdef list rewrite(list order, Py_ssize_t *uses, char *kept)
