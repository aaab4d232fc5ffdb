from __future__ import annotations

from asyncjobs._cli import main

raise SystemExit(main())
