"""yaml.safe_load that remembers lines: every mapping and sequence knows the
line it starts on and the line of each of its keys/items, so that an error can
name file:line.  SafeLoader: no object tags, no code runs from a scenario."""
import yaml

from .errors import InputError


class Map(dict):
    line = 0
    key_lines = None

    def line_of(self, key):
        return (self.key_lines or {}).get(key, self.line)


class Seq(list):
    line = 0
    item_lines = None

    def line_of(self, index):
        return (self.item_lines or [])[index] if index < len(self.item_lines or []) else self.line


class _Loader(yaml.SafeLoader):
    pass


def _map(loader, node):
    loader.flatten_mapping(node)
    m = Map()
    m.line = node.start_mark.line + 1
    m.key_lines = {}
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise InputError("mapping keys must be plain scalars", line=knode.start_mark.line + 1)
        if key in m:
            raise InputError(f"duplicate key {key!r}", line=knode.start_mark.line + 1, field=str(key))
        m[key] = loader.construct_object(vnode, deep=True)
        m.key_lines[key] = knode.start_mark.line + 1
    return m


def _seq(loader, node):
    s = Seq(loader.construct_object(n, deep=True) for n in node.value)
    s.line = node.start_mark.line + 1
    s.item_lines = [n.start_mark.line + 1 for n in node.value]
    return s


_Loader.add_constructor("tag:yaml.org,2002:map", _map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _seq)


def load(text, file):
    """Parse one YAML document; InputError with file:line on any YAML error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except InputError as exc:
        exc.file = file
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML: {problem}", file=file, line=line) from None
