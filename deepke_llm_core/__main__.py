"""``python -m deepke_llm_core`` is the same as ``deepke-llm``."""

import sys

from .cli import main

sys.exit(main())
