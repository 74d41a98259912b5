"""SNS subscription filter policies: validated once by :func:`compile_policy`, matched per message.

Amazon SNS is the reference: its filter language is AWS Event Ruler's, with SNS's own limits
(5 keys, 150 combinations, 256 KB) and operator set (no wildcard, no anything-but suffix).
Error messages are the reason texts SNS sends, so the wire layer can prefix them as AWS does
(``Invalid parameter: FilterPolicy: <reason>``).

Compilation turns the policy into a tree of small closures over precomputed sets and tuples;
:meth:`FilterPolicy.matches` only walks the message. Message values are typed like JSON, as Event
Ruler sees them: a ``String`` attribute is a string, a ``Number`` attribute a number, a
``String.Array`` attribute the elements of its JSON array, ``Binary`` attributes are absent.
String operators (exact string, prefix, suffix, equals-ignore-case, cidr) match strings only,
numeric ones (exact number, numeric) numbers only, ``true``/``false``/``null`` themselves only.
``anything-but`` matches any present value that is not one it names, whatever its type. A key
matches when any of its values matches any of the policy values; keys are ANDed, ``$or`` ORs.

In ``MessageBody`` scope the body must be a JSON object. Policy paths run through arrays at any
depth ("crushed": each key is matched on its own, not per array element), and dots split keys
both ways: policy ``{"a.b": [...]}`` reads payload ``{"a": {"b": ...}}`` and ``{"a.b": ...}``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from millpond.errors import InvalidFilterPolicy

__all__ = [
    "MAX_COMBINATIONS",
    "MAX_KEYS",
    "MAX_POLICY_BYTES",
    "SCOPES",
    "FilterPolicy",
    "compile_policy",
]

SCOPES = ("MessageAttributes", "MessageBody")
MAX_KEYS = 5
MAX_COMBINATIONS = 150
MAX_POLICY_BYTES = 256 * 1024

_SCALE = 100_000  # SNS compares numbers to 5 decimal places: compare integers of 1e-5 units
_NUMBER_LIMIT = 1_000_000_000  # SNS numeric range is -1e9..1e9
_LIMIT_KEY = _NUMBER_LIMIT * _SCALE
_OUT_OF_RANGE = "Value must be between -1.0E9 and 1.0E9, inclusive"
NESTED_IN_ATTRIBUTES = "Filter policy scope MessageAttributes does not support nested filter policy"
_NUMERIC_OPS = frozenset(("<", "<=", "=", ">", ">="))
# Event Ruler refuses these as field names inside $or, where they would read as operators.
_RESERVED_IN_OR = frozenset(
    "exactly equals-ignore-case prefix suffix anything-but exists wildcard numeric cidr"
    " = < <= > >= regex not-wildcard not-equals-ignore-case date-after date-on-or-after"
    " date-before date-on-or-before in-date-range ip-address-in-range"
    " ip-address-not-in-range".split()
)
# Event Ruler checks an address's shape before parsing it: anything else is "Nonstandard".
_IPV4_SHAPE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_SHAPE = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_MASK_BITS = re.compile(r"[+-]?[0-9]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")  # a Number attribute written as an integer: read exactly
_ANY_LITERAL = frozenset((True, False, None))
_MISSING: Any = object()

Check = Callable[[Any], bool]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON token {name}")


# One shared decoder: json.loads(s, **kw) would build a new decoder per message.
# NaN/Infinity are not JSON; SNS's parser refuses them, so do we.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _num_key(x: float) -> int | None:
    """A number as an integer count of 1e-5 units (exact for ints), or None if not finite."""
    try:
        return round(x * _SCALE)
    except (OverflowError, ValueError):
        return None


def _is_number(v: Any) -> bool:
    return type(v) is int or type(v) is float  # bool is an int subclass, and not a number here


def _token(v: Any) -> str:
    """How Event Ruler's parser names a JSON token in its messages."""
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, list):
        return "["
    if isinstance(v, dict):
        return "{"
    return v if isinstance(v, str) else json.dumps(v)


def _check_range(*values: float) -> None:
    for v in values:
        if not -_NUMBER_LIMIT <= v <= _NUMBER_LIMIT:
            raise InvalidFilterPolicy(_OUT_OF_RANGE)


# -- parse and validate ---------------------------------------------------------------------------


class _Leaf:
    """One policy key: its path and every value of its array, sorted by kind."""

    def __init__(self, path: tuple[str, ...]) -> None:
        self.path = path
        self.strings: set[str] = set()
        self.numbers: set[int] = set()  # _num_key units, exact numbers and numeric "="
        self.literals: set[bool | None] = set()
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.lowered: set[str] = set()  # equals-ignore-case
        self.cidrs: list[tuple[int, int, int]] = []  # (version, first, last) as integers
        self.ranges: list[tuple[int, int]] = []  # inclusive, in _num_key units
        self.but_strings: list[frozenset[str]] = []
        self.but_numbers: list[frozenset[int]] = []
        self.but_prefixes: list[str] = []
        self.exists: set[bool] = set()


class _Group:
    """AND (``any_of=False``) or OR of child groups and leaves."""

    def __init__(self, any_of: bool, children: list[_Group | _Leaf]) -> None:
        self.any_of = any_of
        self.children = children


class _Parser:
    """Walks a decoded policy once: validates it, counts combinations, notes nesting."""

    def __init__(self) -> None:
        self.nested = False

    def parse_object(
        self, obj: dict[str, Any], path: tuple[str, ...], depth: int, in_or: bool
    ) -> tuple[_Group, int]:
        # combinations: each array multiplies by its length times its depth, $or sums branches
        if not obj:
            raise InvalidFilterPolicy("Empty objects are not allowed")
        children: list[_Group | _Leaf] = []
        combinations = 1
        for key, value in obj.items():
            if key == "$or":
                group, count = self.parse_or(value, path, depth)
                children.append(group)
            elif in_or and key in _RESERVED_IN_OR:
                raise InvalidFilterPolicy(
                    f"{key} is Ruler reserved fieldName which cannot be used inside $or."
                )
            elif isinstance(value, dict):
                self.nested = True
                group, count = self.parse_object(value, (*path, key), depth + 1, in_or)
                children.extend(group.children)  # an AND inside an AND is one AND
            elif isinstance(value, list):
                children.append(self.parse_values(value, (*path, key)))
                count = len(value) * depth
            else:
                raise InvalidFilterPolicy(f'"{key}" must be an object or an array')
            combinations *= count
        return _Group(False, children), combinations

    def parse_or(self, value: Any, path: tuple[str, ...], depth: int) -> tuple[_Group, int]:
        if not isinstance(value, list):
            raise InvalidFilterPolicy("It must be an Array followed with $or.")
        branches: list[_Group | _Leaf] = []
        combinations = 0
        for item in value:
            if not isinstance(item, dict):
                raise InvalidFilterPolicy(
                    "Only JSON object is allowed in array of $or relationship."
                )
            group, count = self.parse_object(item, path, depth, True)
            branches.append(group)
            combinations += count
        if len(branches) < 2:
            raise InvalidFilterPolicy("There must have at least 2 Objects in $or relationship.")
        return _Group(True, branches), combinations

    def parse_values(self, values: list[Any], path: tuple[str, ...]) -> _Leaf:
        if not values:
            raise InvalidFilterPolicy("Empty arrays are not allowed")
        leaf = _Leaf(path)
        for v in values:
            if isinstance(v, str):
                leaf.strings.add(v)
            elif v is None or isinstance(v, bool):
                leaf.literals.add(v)
            elif _is_number(v):
                # out of SNS's range stays matchable by plain equality, as in Event Ruler
                key = _num_key(v)
                if key is not None:
                    leaf.numbers.add(key)
            elif isinstance(v, dict):
                self.parse_expression(v, leaf)
            else:
                raise InvalidFilterPolicy(
                    "Match value must be String, number, true, false, or null"
                )
        return leaf

    def parse_expression(self, expr: dict[str, Any], leaf: _Leaf) -> None:
        if not expr:
            raise InvalidFilterPolicy("Match expression name not found")
        op, arg = next(iter(expr.items()))
        extra_key_error = "Only one key allowed in match expression"
        if op == "prefix":
            leaf.prefixes.append(_string_arg(op, arg))
        elif op == "suffix":
            leaf.suffixes.append(_string_arg(op, arg))
        elif op == "equals-ignore-case":
            leaf.lowered.add(_string_arg(op, arg).lower())
        elif op == "exists":
            if not isinstance(arg, bool):
                raise InvalidFilterPolicy("exists match pattern must be either true or false.")
            leaf.exists.add(arg)
        elif op == "cidr":
            leaf.cidrs.append(_parse_cidr(arg))
        elif op == "numeric":
            _parse_numeric(arg, leaf)
            extra_key_error = "Too many elements in numeric expression"  # Event Ruler's wording
        elif op == "anything-but":
            _parse_anything_but(arg, leaf)
            extra_key_error = "Too many elements in numeric expression"
        else:
            raise InvalidFilterPolicy(f"Unrecognized match type {op}")
        if len(expr) > 1:
            raise InvalidFilterPolicy(extra_key_error)


def _string_arg(op: str, arg: Any) -> str:
    if not isinstance(arg, str):
        raise InvalidFilterPolicy(f"{op} match pattern must be a string")
    return arg


def _parse_cidr(arg: Any) -> tuple[int, int, int]:
    if not isinstance(arg, str):
        raise InvalidFilterPolicy("prefix match pattern must be a string")  # sic, as SNS says
    parts = arg.split("/")
    while parts and not parts[-1]:
        parts.pop()  # Java's split drops trailing empty strings; match its "one '/'" verdict
    if len(parts) != 2:
        raise InvalidFilterPolicy("Malformed CIDR, one '/' required")
    address, mask_text = parts
    if not _MASK_BITS.fullmatch(mask_text):
        raise InvalidFilterPolicy("Malformed CIDR, mask bits must be an integer")
    mask = int(mask_text)
    if mask < 0:
        raise InvalidFilterPolicy("Malformed CIDR, mask bits must not be negative")
    if not (_IPV4_SHAPE.fullmatch(address) or _IPV6_SHAPE.fullmatch(address)):
        raise InvalidFilterPolicy(f"Nonstandard IP address: {address}")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidFilterPolicy(f"Invalid IP address: {address}") from None
    width = ip.max_prefixlen
    if mask >= width:
        raise InvalidFilterPolicy(f"IPv{ip.version} mask bits must be < {width}")
    # Event Ruler's range starts at the address as written (host bits are not cleared)
    first = int(ip)
    return ip.version, first, first | ((1 << (width - mask)) - 1)


def _parse_numeric(arg: Any, leaf: _Leaf) -> None:
    # Event Ruler's grammar: [op, n] or [">"|">=", n, "<"|"<=", n]; its messages, in its order.
    if not isinstance(arg, list):
        raise InvalidFilterPolicy("Value of numeric must be an array.")
    if not arg or not isinstance(arg[0], str):
        raise InvalidFilterPolicy(
            f"Invalid member in numeric match: {_token(arg[0]) if arg else ']'}"
        )
    op = arg[0]
    if op not in _NUMERIC_OPS:
        raise InvalidFilterPolicy(f"Unrecognized numeric range operator: {op}")
    if len(arg) < 2 or not _is_number(arg[1]):
        raise InvalidFilterPolicy(f"Value of {'equals' if op == '=' else op} must be numeric")
    value = arg[1]
    if op in ("=", "<", "<=") or len(arg) == 2:
        if len(arg) > 2:
            raise InvalidFilterPolicy("Too many elements in numeric expression")
        _check_range(value)
        key = _num_key(value)
        assert key is not None  # finite: the decoder refuses NaN and Infinity
        if op == "=":
            leaf.numbers.add(key)
        elif op[0] == "<":
            leaf.ranges.append((-_LIMIT_KEY, key - (op == "<")))
        else:
            leaf.ranges.append((key + (op == ">"), _LIMIT_KEY))
        return
    top_op = arg[2]
    if not isinstance(top_op, str):
        raise InvalidFilterPolicy(f"Bad value in numeric range: {_token(top_op)}")
    if top_op not in ("<", "<="):
        raise InvalidFilterPolicy(f"Bad numeric range operator: {top_op}")
    if len(arg) < 4 or not _is_number(arg[3]):
        raise InvalidFilterPolicy(f"Value of {top_op} must be numeric")
    if len(arg) > 4:
        raise InvalidFilterPolicy("Too many terms in numeric range expression")
    top = arg[3]
    _check_range(value, top)
    if value >= top:
        raise InvalidFilterPolicy("Bottom must be less than top")
    low, high = _num_key(value), _num_key(top)
    assert low is not None and high is not None
    # whole 1e-5 units: "> x" is ">= x + 1 unit", "< y" is "<= y - 1 unit"
    leaf.ranges.append((low + (op == ">"), high - (top_op == "<")))


def _parse_anything_but(arg: Any, leaf: _Leaf) -> None:
    if isinstance(arg, dict):
        if not arg:
            raise InvalidFilterPolicy("Anything-But expression name not found")
        op, prefix = next(iter(arg.items()))
        if op != "prefix":  # SNS has no anything-but suffix / equals-ignore-case / wildcard
            raise InvalidFilterPolicy(f"Unsupported anything-but pattern: {op}")
        if not isinstance(prefix, str):
            raise InvalidFilterPolicy("prefix match pattern must be a string")
        if not prefix:
            raise InvalidFilterPolicy("Null prefix/suffix not allowed")
        if len(arg) > 1:
            raise InvalidFilterPolicy("Only one key allowed in match expression")
        leaf.but_prefixes.append(prefix)
        return
    if isinstance(arg, list):
        values = arg
    elif isinstance(arg, str) or _is_number(arg):
        values = [arg]
    else:
        raise InvalidFilterPolicy(
            "Value of anything-but must be an array or single string/number value."
        )
    if not all(isinstance(v, str) or _is_number(v) for v in values):
        raise InvalidFilterPolicy("Inside anything but list, start|null|boolean is not supported.")
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if not isinstance(v, str)]
    if bool(strings) == bool(numbers):
        raise InvalidFilterPolicy(
            "Inside anything but list, either all values are number or string, "
            "mixed type is not supported"
        )
    if strings:
        leaf.but_strings.append(frozenset(strings))
    else:
        _check_range(*numbers)
        leaf.but_numbers.append(frozenset(k for k in map(_num_key, numbers) if k is not None))


# -- compile to closures --------------------------------------------------------------------------


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _any_of(checks: list[Check]) -> Check:
    if not checks:
        return _never
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda x: a(x) or b(x)
    frozen = tuple(checks)

    def any_check(x: Any) -> bool:
        for check in frozen:
            if check(x):
                return True
        return False

    return any_check


def _all_of(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda x: a(x) and b(x)
    frozen = tuple(checks)

    def all_checks(x: Any) -> bool:
        for check in frozen:
            if not check(x):
                return False
        return True

    return all_checks


def _not_in(excluded: frozenset[Any]) -> Check:
    return lambda x: x not in excluded


def _not_prefixed(prefix: str) -> Check:
    return lambda s: not s.startswith(prefix)


def _in_cidrs(cidrs: tuple[tuple[int, int, int], ...]) -> Check:
    def in_cidrs(s: str) -> bool:
        try:
            ip = ipaddress.ip_address(s)
        except ValueError:
            return False  # not an IP address: no match, never an error
        n, version = int(ip), ip.version
        # the version test matters: an IPv4 integer would fall inside low IPv6 ranges
        return any(v == version and first <= n <= last for v, first, last in cidrs)

    return in_cidrs


def _string_test(leaf: _Leaf) -> Check:
    if leaf.but_numbers:
        return _always  # a string is never one of the excluded numbers
    tests: list[Check] = []
    if leaf.strings:
        tests.append(frozenset(leaf.strings).__contains__)
    if leaf.prefixes:
        prefixes = tuple(leaf.prefixes)
        tests.append(lambda s: s.startswith(prefixes))
    if leaf.suffixes:
        suffixes = tuple(leaf.suffixes)
        tests.append(lambda s: s.endswith(suffixes))
    if leaf.lowered:
        lowered = frozenset(leaf.lowered)
        tests.append(lambda s: s.lower() in lowered)
    if leaf.cidrs:
        tests.append(_in_cidrs(tuple(leaf.cidrs)))
    tests.extend(map(_not_in, leaf.but_strings))
    tests.extend(map(_not_prefixed, leaf.but_prefixes))
    return _any_of(tests)


def _number_test(leaf: _Leaf) -> Check:
    if leaf.but_strings or leaf.but_prefixes:
        return _always  # a number is never one of the excluded strings
    if not (leaf.numbers or leaf.ranges or leaf.but_numbers):
        return _never
    # one closure, not a chain of them: numbers are tested once per value per message
    exact = frozenset(leaf.numbers)
    ranges = tuple(leaf.ranges)
    excluded = tuple(leaf.but_numbers)

    def test_number(x: float) -> bool:
        try:
            k = round(x * _SCALE)
        except (OverflowError, ValueError):
            return bool(excluded)  # not finite: no number equals it, anything-but matches
        if k in exact:
            return True
        for low, high in ranges:
            if low <= k <= high:
                return True
        for numbers in excluded:
            if k not in numbers:
                return True
        return False

    return test_number


def _value_tests(leaf: _Leaf) -> tuple[Check, Check, Check]:
    """(test for a str, test for a number, test for any JSON leaf value) of one key."""
    test_str = _string_test(leaf)
    test_num = _number_test(leaf)
    has_but = leaf.but_strings or leaf.but_numbers or leaf.but_prefixes
    literals = _ANY_LITERAL if has_but else frozenset(leaf.literals)

    def test(v: Any) -> bool:
        t = type(v)
        if t is str:
            return test_str(v)
        if t is int or t is float:
            return test_num(v)
        return v in literals  # True, False or None

    return test_str, test_num, test


def _crush(values: list[Any], out: list[Any]) -> list[Any]:
    """Leaf values of a JSON array, through nested arrays; objects are not leaves."""
    pending = [values]  # a stack, not recursion: arrays nest as deep as the decoder allows
    while pending:
        for v in pending.pop():
            if type(v) is list:
                pending.append(v)
            elif type(v) is not dict:
                out.append(v)
    return out


def _number_value(raw: str) -> float:
    """A Number attribute as the JSON decoder reads a number: integers exactly, as body numbers
    and String.Array elements are (float() rounds integers above 2**53, and the fixed-point key
    of one above ~2.9e12, so a 13-digit id would never equal itself)."""
    return int(raw) if _INTEGER.fullmatch(raw) else float(raw)


def _attribute_values(attr: Mapping[str, Any]) -> list[Any] | None:
    """Typed values of one message attribute; None for the Binary ones SNS ignores."""
    data_type = attr.get("DataType") or "String"
    raw = attr.get("StringValue")
    if data_type == "String.Array":
        try:
            decoded = _DECODER.decode(raw) if isinstance(raw, str) else None
        except (ValueError, RecursionError):
            return []
        return _crush(decoded, []) if type(decoded) is list else []
    base = data_type.partition(".")[0]
    if base == "Binary":
        return None
    if base == "Number" and isinstance(raw, str):
        try:
            number = _number_value(raw)
        except ValueError:
            return [raw]
        return [number]
    return [raw] if isinstance(raw, str) else []


def _attribute_leaf(leaf: _Leaf) -> Check:
    (name,) = leaf.path
    if_present, if_absent = True in leaf.exists, False in leaf.exists
    test_str, test_num, test = _value_tests(leaf)

    def check(attributes: Mapping[str, Any]) -> bool:
        attr = attributes.get(name)
        if attr is None:
            return if_absent
        # plain String and Number first, without building a list of values
        data_type = attr.get("DataType")
        if data_type == "String":
            value = attr.get("StringValue")
            if type(value) is str:
                return if_present or test_str(value)
        elif data_type == "Number":
            value = attr.get("StringValue")
            if type(value) is str:
                if if_present:
                    return True
                try:
                    number = _number_value(value)
                except ValueError:
                    return test_str(value)  # SNS refuses these at publish; a string here
                return test_num(number)
        values = _attribute_values(attr)
        if values is None:
            return if_absent
        return if_present or any(map(test, values))

    return check


def _body_leaf(leaf: _Leaf) -> Check:
    if_present, if_absent = True in leaf.exists, False in leaf.exists
    test_str, _, test = _value_tests(leaf)
    segments = ".".join(leaf.path).split(".")
    if len(segments) == 1:
        return _body_key(segments[0], if_present, if_absent, test_str, test)
    n = len(segments)
    # keys[i]: each payload key that may start at segment i ("a", "a.b", ...) and where it ends
    keys = [tuple((j, ".".join(segments[i:j])) for j in range(i + 1, n + 1)) for i in range(n)]

    def check_path(root: dict[str, Any]) -> bool:
        found = False
        pending: list[tuple[Any, int]] = [(root, 0)]  # a stack, not recursion: bodies nest deep
        while pending:
            node, i = pending.pop()
            t = type(node)
            if t is list:
                pending.extend((item, i) for item in node)
            elif i == n:
                if t is str:
                    if if_present or test_str(node):
                        return True
                    found = True
                elif t is not dict:  # exists and every operator see leaves only
                    if if_present or test(node):
                        return True
                    found = True
            elif t is dict:
                for j, key in keys[i]:
                    child = node.get(key, _MISSING)
                    if child is not _MISSING:
                        pending.append((child, j))
        return if_absent and not found

    return check_path


def _body_key(key: str, if_present: bool, if_absent: bool, test_str: Check, test: Check) -> Check:
    """A top-level key without dots: one dict lookup."""

    def check_key(root: dict[str, Any]) -> bool:
        value = root.get(key, _MISSING)
        t = type(value)
        if t is str:
            return if_present or test_str(value)
        if value is _MISSING or t is dict:
            return if_absent
        if t is list:
            values = _crush(value, [])
            if not values:
                return if_absent
            return if_present or any(map(test, values))
        return if_present or test(value)

    return check_key


def _compile(node: _Group | _Leaf, make_leaf: Callable[[_Leaf], Check]) -> Check:
    if isinstance(node, _Leaf):
        return make_leaf(node)
    checks = [_compile(child, make_leaf) for child in node.children]
    return _any_of(checks) if node.any_of else _all_of(checks)


# -- public API -----------------------------------------------------------------------------------


class FilterPolicy:
    """A validated, compiled filter policy. Immutable; safe to share between threads.

    Attributes:
        scope: ``"MessageAttributes"`` or ``"MessageBody"``.
        text: Compact JSON text of the policy, in the order given; what to persist and return.
    """

    __slots__ = ("_check", "_in_body", "scope", "text")

    def __init__(self, scope: str, text: str, check: Check, in_body: bool) -> None:
        # use compile_policy(); check is the compiled tree, fed the attributes or the body
        self.scope = scope
        self.text = text
        self._check = check
        self._in_body = in_body

    def matches(self, attributes: Mapping[str, Any] | None, body: str | bytes | None) -> bool:
        """Whether a published message passes the policy. Never raises for any message.

        Args:
            attributes: Message attributes in the SNS/SQS shape
                (``{name: {"DataType": ..., "StringValue": ...}}``), or None. Read only in
                ``MessageAttributes`` scope.
            body: The published Message (UTF-8 bytes or str). Read only in ``MessageBody``
                scope, where anything but a JSON object never matches.
        """
        if not self._in_body:
            # SNS: "An empty set of attributes results in the filter not matching", even for
            # "exists": false (attribute-key-matching.html). The empty policy is _always.
            if not attributes:
                return self._check is _always
            return self._check(attributes)
        return _match_body(self._check, body)

    def __repr__(self) -> str:
        return f"FilterPolicy(scope={self.scope!r}, text={self.text!r})"


def compile_policy(
    policy: str | Mapping[str, Any], scope: str = "MessageAttributes"
) -> FilterPolicy:
    """Validate an SNS filter policy and compile it into a matcher.

    Args:
        policy: The policy as JSON text, or already decoded (JSON types only; not modified).
        scope: The subscription's FilterPolicyScope, ``"MessageAttributes"`` (default) or
            ``"MessageBody"``.

    Returns:
        The compiled policy. ``{}`` is a policy that matches every message.

    Raises:
        InvalidFilterPolicy: SNS would refuse the policy (or the scope); the message is SNS's
            reason text, e.g. ``"Filter policy can not have more than 5 keys"``.
    """
    if scope not in SCOPES:
        raise InvalidFilterPolicy(
            f"FilterPolicyScope: Invalid value [{scope}]. "
            "Please use either MessageBody or MessageAttributes"
        )
    doc = _decode_policy(policy)
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    if not doc:  # no condition: every message, without reading the body
        return FilterPolicy(scope, text, _always, in_body=False)
    parser = _Parser()
    root, combinations = parser.parse_object(doc, (), 1, False)
    if parser.nested and scope == "MessageAttributes":
        raise InvalidFilterPolicy(NESTED_IN_ATTRIBUTES)
    if len(doc) > MAX_KEYS:  # top-level keys only, "$or" counting as one, as SNS counts
        raise InvalidFilterPolicy(f"Filter policy can not have more than {MAX_KEYS} keys")
    if combinations > MAX_COMBINATIONS:
        raise InvalidFilterPolicy("Filter policy is too complex")

    if scope == "MessageAttributes":
        return FilterPolicy(scope, text, _compile(root, _attribute_leaf), in_body=False)
    return FilterPolicy(scope, text, _compile(root, _body_leaf), in_body=True)


def _match_body(check: Check, body: Any) -> bool:
    try:
        if type(body) is not str:
            body = bytes(body).decode("utf-8")
        doc = _DECODER.decode(body)
    except (TypeError, ValueError, RecursionError):
        return False  # not JSON (or absurdly deep): SNS does not deliver it
    return type(doc) is dict and check(doc)


def _decode_policy(policy: Any) -> dict[str, Any]:
    if isinstance(policy, Mapping):
        try:  # round-trip through text: checks JSON types and sizes the policy as SNS sees it
            policy = json.dumps(policy, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidFilterPolicy(f"failed to parse JSON. {exc}") from None
    if isinstance(policy, (bytes, bytearray)):
        try:
            policy = policy.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidFilterPolicy(f"failed to parse JSON. {exc}") from None
    if not isinstance(policy, str):
        raise InvalidFilterPolicy("Filter is not an object")
    if len(policy.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise InvalidFilterPolicy("Filter policy can not be larger than 256 KB")
    try:
        doc = _DECODER.decode(policy)
    except (ValueError, RecursionError) as exc:
        raise InvalidFilterPolicy(f"failed to parse JSON. {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidFilterPolicy("Filter is not an object")
    return doc
