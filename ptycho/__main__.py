"""``python -m ptycho {simulate,train,infer}`` — see ptycho.cli."""

from ptycho.cli import main

raise SystemExit(main())
