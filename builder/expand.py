"""Docker's shell-word lexer: quote removal, escapes and `$VAR` expansion of one word.

This follows the rules of the Dockerfile frontend (not a POSIX shell):

* `'...'` is literal; inside `"..."` the escape character only escapes `"`, `$` and itself
  (otherwise it stays), `$` still expands; outside quotes the escape character makes the next
  character literal and is dropped (a lone one at the very end is dropped too).
* `$NAME`, `${NAME}`, `${NAME:-w}` `${NAME-w}` `${NAME:+w}` `${NAME+w}` `${NAME:?msg}`
  `${NAME?msg}`, and the pattern forms `${NAME#p}` `${NAME##p}` `${NAME%p}` `${NAME%%p}`
  `${NAME/p/r}` `${NAME//p/r}` (`*` and `?` wildcards, no bracket expressions). Anything else
  inside `${}` is an error. Unset variables expand to "" (special and positional parameters
  such as `$1`, `$@`, `$$` are never set).
* With splitting (`expand_words`) the result is cut into words at unquoted whitespace; the
  whitespace that an unquoted variable expansion produces splits too.

The lexer is a hand-written scanner rather than a lark grammar: what a character means
depends on the modifier being read (`%` keeps escapes raw, `/` stops on `/`), which is a
context a grammar-driven lexer cannot see. Errors raise `builder.errors.ExpansionError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from builder.errors import ExpansionError
from cache.records import record

__all__ = ["Lexer", "expand_word", "expand_words", "check_word"]

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# Go's unicode.IsSpace: what ends a word when splitting.
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)


def _is_name_char(ch: str) -> bool:
    return ch.isalpha() or ch.isdigit() or ch == "_"


class _Words:
    """Accumulates the split form: quoted text is raw, expanded text splits at spaces."""

    __slots__ = ("buf", "words", "in_word")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _GO_SPACE:
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf = []
                self.in_word = False
        else:
            self.buf.append(ch)
            self.in_word = True

    def add_raw(self, text: str) -> None:
        if text:
            self.buf.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.buf:
            joined = "".join(self.buf)
            if joined:
                self.words.append(joined)
            self.buf = []
        return self.words


@record
class Lexer:
    """One configured lexer. The flags mirror the upstream modes used for heredoc detection:

    `raw_quotes` keeps quote characters in the output, `raw_escapes` keeps escape characters,
    `skip_unset` leaves references to unset variables as written, `skip_quotes` treats quote
    characters as ordinary text (used for heredoc bodies).
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_unset: bool = False
    skip_quotes: bool = False

    def process(self, word: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        """(single-word result, split words) of `word` under `env`."""
        scan = _Scan(self, word, env)
        try:
            return scan.stop_on(None, self.raw_escapes)
        except ExpansionError as exc:
            raise ExpansionError(
                f"failed to process {_go_quote(word)}: {exc.msg}",
                word=word,
                offset=exc.offset if exc.offset >= 0 else scan.pos,
            ) from None


class _Scan:
    __slots__ = ("lx", "text", "pos", "env", "raw_escapes")

    def __init__(self, lx: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lx
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lx.raw_escapes

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        if self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            return ch
        return ""

    def stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        esc = self.lx.escape
        quotes = not self.lx.skip_quotes
        text = self.text
        n = len(text)
        while self.pos < n:
            ch = text[self.pos]
            if stop is not None and ch == stop:
                self.pos += 1
                return "".join(out), words.result()
            if ch == "$":
                tmp = self.dollar()
                out.append(tmp)
                words.add_string(tmp)
            elif quotes and ch == "'":
                tmp = self.single_quote()
                out.append(tmp)
                words.add_raw(tmp)
            elif quotes and ch == '"':
                tmp = self.double_quote()
                out.append(tmp)
                words.add_raw(tmp)
            else:
                self.pos += 1
                if ch == esc:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        out.append(ch)
                    if self.pos >= n:
                        break
                    ch = text[self.pos]
                    self.pos += 1
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop is not None:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quote(self) -> str:
        start = self.pos
        self.pos += 1
        end = self.text.find("'", self.pos)
        if end < 0:
            self.pos = len(self.text)
            raise ExpansionError(
                "unexpected end of statement while looking for matching single-quote",
                offset=start,
            )
        body = self.text[self.pos : end]
        self.pos = end + 1
        return f"'{body}'" if self.lx.raw_quotes else body

    def double_quote(self) -> str:
        out: list[str] = []
        esc = self.lx.escape
        start = self.pos
        self.pos += 1
        if self.lx.raw_quotes:
            out.append('"')
        while True:
            ch = self.peek()
            if ch == "":
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote",
                    offset=start,
                )
            if ch == '"':
                self.pos += 1
                if self.lx.raw_quotes:
                    out.append('"')
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == "":
                    continue
                if nxt in ('"', "$", esc):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        text = self.text
        start = self.pos
        if start < len(text):
            ch = text[start]
            if ch.isdigit():
                while self.pos < len(text) and text[self.pos].isdigit():
                    self.pos += 1
                return text[start : self.pos]
            if ch in _SPECIAL_PARAMS:
                self.pos += 1
                return ch
        while self.pos < len(text) and _is_name_char(text[self.pos]):
            self.pos += 1
        return text[start : self.pos]

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        start = self.pos
        try:
            return self._dollar()
        except ExpansionError as exc:
            if exc.offset < 0:
                exc.offset = start  # point at the `$` of the bad expansion
            raise

    def _dollar(self) -> str:
        self.pos += 1  # the $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        self.pos += 1  # the {
        ch = self.peek()
        if ch == "":
            raise ExpansionError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        mod = ch
        null_is_unset = False
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            mod += ch
        if null_is_unset or ch in ("+", "-", "?", "#", "%"):
            raw = ch in ("#", "%")
            if null_is_unset and raw:
                raise ExpansionError(f"unsupported modifier ({mod}) in substitution")
            try:
                word, _ = self.stop_on("}", raw)
            except ExpansionError:
                if self.peek() == "":
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, found = self.lookup(name)
            if self.lx.skip_unset and not found:
                return "${" + name + mod + word + "}"
            if ch == "-":
                return word if (not found or (null_is_unset and value == "")) else value
            if ch == "+":
                return "" if (not found or (null_is_unset and value == "")) else word
            if ch not in ("?", "#", "%"):
                raise ExpansionError(f"unsupported modifier ({mod}) in substitution")
            if ch == "?":
                if not found:
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = False
            if word.startswith(ch):
                greedy = True
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        if ch == "/":
            replace_all = self.peek() == "/"
            if replace_all:
                self.pos += 1
            try:
                pattern, _ = self.stop_on("/", True)
            except ExpansionError:
                if self.peek() == "":
                    raise ExpansionError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.stop_on("}", True)
            except ExpansionError:
                if self.peek() == "":
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, found = self.lookup(name)
            if self.lx.skip_unset and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            rx = _pattern_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return rx.sub(lambda _m: replacement, value)
            m = rx.search(value)
            return value[: m.start()] + replacement + value[m.end() :] if m else value
        if ch == "":
            raise ExpansionError("syntax error: missing '}'")
        raise ExpansionError(f"unsupported modifier ({mod}) in substitution")


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (`*`, `?`, `\\` escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < n else ""
            if nxt in ("}", "/"):
                continue  # an escape that only protected the ${} syntax
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise ExpansionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'"
                )
            out.append(re.escape(nxt))
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse the pattern but keep each escape in front of the character it escapes.
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Regexes find leftmost matches; the shortest rightmost one is a leftmost one reversed.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _go_quote(text: str) -> str:
    from builder.dump import go_quote

    return go_quote(text)


_DEFAULT = Lexer()
_BACKTICK = Lexer(escape="`")


def _lexer(escape: str) -> Lexer:
    return _DEFAULT if escape == "\\" else _BACKTICK if escape == "`" else Lexer(escape=escape)


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """`word` with quotes removed, escapes applied and variables expanded (no splitting)."""
    return _lexer(escape).process(word, env)[0]


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """`word` expanded as by `expand_word`, then split into words at unquoted whitespace."""
    return _lexer(escape).process(word, env)[1]


class _Anything(dict):
    """An environment where every variable is set to "x": syntax checks without values."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return "x"


def check_word(word: str, escape: str = "\\") -> None:
    """Raise `ExpansionError` if `word` has a syntax error whatever the environment."""
    _lexer(escape).process(word, _Anything())
