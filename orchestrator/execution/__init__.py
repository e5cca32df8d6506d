"""Running commands: one bounded subprocess (:mod:`.runner`), its output (:mod:`.output`), pytest
summaries (:mod:`.pytest_summary`) and Do-Now steps and checks (:mod:`.steps`)."""
