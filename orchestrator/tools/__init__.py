"""Commands built on the cycle: the main job (:mod:`.mainjob`), replay (:mod:`.replay`), status
(:mod:`.status`) and the ledger check (:mod:`.ledger_check`)."""
