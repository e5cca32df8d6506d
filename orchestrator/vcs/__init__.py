"""Git: the one gateway (:mod:`.repo`), harness history and dwell (:mod:`.history`), owned paths and
commit names (:mod:`.owned`), secret scanning (:mod:`.secret_scan`)."""
