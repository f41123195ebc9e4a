"""`python -m frontends serve ...` is the same as `service-discovery serve ...`."""

from .cli import main

raise SystemExit(main())
