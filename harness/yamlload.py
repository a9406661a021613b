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


def _measure(root, max_nodes, max_depth, file):
    """Refuse a document that is too big or too deep once its aliases are
    expanded (a YAML alias bomb expands exponentially), before anything is
    built from it: walks the node graph once, sizes memoized per node."""
    size, depth, on_path = {}, {}, set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            line = node.start_mark.line + 1
            if size[key] > max_nodes:
                raise InputError(f"the document expands to more than {max_nodes} values "
                                 f"(aliases included): split it or drop the aliases", file=file, line=line)
            if depth[key] > max_depth:
                raise InputError(f"nested more than {max_depth} levels deep", file=file, line=line)
            continue
        if key in size:
            continue
        if key in on_path:
            raise InputError("an alias refers to a mapping or list that contains it", file=file,
                             line=node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def load(text, file, max_nodes=100_000, max_depth=64):
    """Parse one YAML document of at most `max_nodes` values (aliases
    expanded) nested at most `max_depth` deep; InputError with file:line on
    any YAML error."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, max_nodes, max_depth, file)
        return loader.construct_document(node)
    except InputError as exc:
        exc.file = file
        raise
    except RecursionError:
        raise InputError(f"nested too deeply (more than {max_depth} levels)", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML: {problem}", file=file, line=line) from None
    finally:
        loader.dispose()
