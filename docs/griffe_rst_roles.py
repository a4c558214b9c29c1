"""A griffe extension for the API reference: fedsec's docstrings are reStructuredText-flavoured.

mkdocstrings renders docstrings as Markdown, where a Sphinx role such as
:func:`load_plugins` would show its colons and an ``rST literal-block marker::``
a doubled colon. This turns roles into code spans and ``::`` line ends into ``:``
(the indented block that follows is a code block in Markdown too).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const|ref):`~?([^`]+)`")
LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)


class RstRoles(Extension):
    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = LITERAL.sub(":", ROLE.sub(r"`\1`", obj.docstring.value))
