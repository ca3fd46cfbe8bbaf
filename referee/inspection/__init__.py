"""Reading a submission without running it: the folder walked without following links (`context`), Python
sources parsed from their bytes (`pysource`), file formats and content sniffed (`formats`, `content`),
licences recognised (`licenses`)."""
