"""The cycle: the supervisor turn (:mod:`.supervisor`), the worker turn (:mod:`.worker`) and the
resumable loop around them (:mod:`.loop`)."""
