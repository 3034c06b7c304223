"""`python -m netspec.docgen > docs/spec-language.md`"""

import sys

from netspec.docgen import spec_language_markdown

sys.stdout.reconfigure(encoding="utf-8")
sys.stdout.write(spec_language_markdown())
