"""`python -m netspec.cli.docgen > docs/spec-language.md`"""

import sys

from netspec.cli.docgen import spec_language_markdown

sys.stdout.reconfigure(encoding="utf-8")
sys.stdout.write(spec_language_markdown())
