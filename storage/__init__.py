"""Files on disk, with one-line errors: checks of the files and folders a tool reads and writes, writes that
leave nothing partial (atomic replace, all-or-nothing append), strict JSON, and opening HDF5 files. Everything
that reads or writes a file goes through here or the libraries' own readers; ``utils`` stays pure."""
