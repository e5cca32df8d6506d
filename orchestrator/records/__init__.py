"""What a cycle leaves behind: the run.json record (:mod:`.run_record`), report directories and
files (:mod:`.artifacts`), the loop lock and cycle state (:mod:`.state`)."""
