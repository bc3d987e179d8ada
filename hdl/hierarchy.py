"""Class hierarchies: a rooted tree whose leaves are the dataset's classes.

Node order (the same everywhere in HDL): nodes ``0 .. C-1`` are the leaves in the dataset's class
order, then the internal nodes other than the root in breadth-first order, and the root is the
last node ``N-1``.  So ``hierarchy.names[:C] == class_names`` and a per-node vector without the
root (HACE logits) is simply ``[:N-1]``.

Heights and distances: the height of a node is the length of the longest downward path from it
to a leaf (leaves 0).  The LCA height ``h(i, j)`` of two classes is the height of their lowest
common ancestor, ``h(i, i) = 0``.  In a tree whose leaves all sit at the same depth D this is
``D - depth(lca)``.

Tree files (YAML ``.yaml``/``.yml`` or JSON ``.json``) hold one mapping with exactly one key, the
root's name, whose value describes its children.  A node's value is

* ``null`` (or absent in a list): a leaf;
* a list whose items are names (leaves) or mappings ``{name: value}`` (subtrees);
* a mapping ``{child name: value}``.

Example (Fashion-MNIST)::

    root:
      tops: [T-shirt/top, Pullover, Coat, Shirt]
      Dress: null
      Trouser: null
      footwear: [Sandal, Sneaker, Ankle boot]
      Bag: null

Names are strings (integers are converted with ``str``; quote anything else).  Every node name
must be unique, the leaves must be exactly the class names and class names must be leaves; the
order of the leaves in the file is irrelevant when ``class_names`` is given.  The numpy arrays a
``Hierarchy`` exposes are read-only (copy them, e.g. ``torch.tensor(h.lca_height)``).  Shipped trees live in
``hdl/trees`` (:func:`load_shipped`); :func:`from_wordnet` builds a tree from WordNet hypernyms.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "Hierarchy",
    "load_hierarchy",
    "load_shipped",
    "shipped_trees",
    "cifar100_fine_to_coarse",
    "from_wordnet",
    "prepare_wordnet_dir",
    "WORDNET_OVERRIDES",
]

TREES_DIR = Path(__file__).resolve().parent / "trees"


def _as_name(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"{where}: node names must be strings (or integers), got {value!r} "
                    f"of type {type(value).__name__}; quote it in the tree file")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class Hierarchy:
    """A rooted tree over ``N`` nodes whose first ``C`` nodes are the classes (see module doc).

    Args:
        names: ``N`` unique node names; ``names[:num_classes]`` are the class names.
        parent: ``N`` parent indices, ``-1`` for the root, which must be the last node.
        num_classes: ``C``; nodes ``0..C-1`` must be exactly the nodes without children.

    Use the constructors :meth:`from_nested`, :meth:`from_file`, :meth:`from_parents`,
    :meth:`flat`, :func:`load_shipped` or :func:`from_wordnet` rather than building the arrays.
    """

    def __init__(self, names: Sequence[str], parent: Sequence[int], num_classes: int):
        names = tuple(_as_name(n, "names") for n in names)
        parent = np.array(parent, dtype=np.int64)  # a copy: it is made read-only below
        n = len(names)
        if parent.shape != (n,):
            raise ValueError(f"parent must have shape ({n},) like names, got {parent.shape}")
        if not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes < n:
            raise ValueError(f"num_classes must be an int in [1, {n - 1}] (a tree needs a root "
                             f"above the classes), got {num_classes!r}")
        dup = sorted(k for k, c in Counter(names).items() if c > 1)
        if dup:
            raise ValueError(f"node names must be unique; duplicated: {dup}")
        roots = np.flatnonzero(parent == -1).tolist()
        if roots != [n - 1]:
            raise ValueError(f"exactly one root (parent -1) is required and it must be the last "
                             f"node {n - 1}; roots found at {roots}")
        if ((parent < -1) | (parent >= n)).any():
            raise ValueError(f"parent indices must lie in [-1, {n - 1}], got {parent.tolist()}")
        # Every node must reach the root in fewer than n steps (no cycles).
        cur = np.arange(n)
        for _ in range(n):
            cur = np.where(cur >= 0, parent[np.maximum(cur, 0)], -1)
        if (cur != -1).any():
            raise ValueError(f"parent array has a cycle through nodes "
                             f"{[names[i] for i in np.flatnonzero(cur != -1)]}")
        has_child = np.zeros(n, dtype=bool)
        has_child[parent[parent >= 0]] = True
        if has_child[:num_classes].any() or not has_child[num_classes:].all():
            raise ValueError("nodes 0..num_classes-1 must be exactly the leaves; class nodes with "
                             f"children: {[names[i] for i in np.flatnonzero(has_child[:num_classes])]}"
                             f", internal nodes without children: "
                             f"{[names[i] for i in num_classes + np.flatnonzero(~has_child[num_classes:])]}")
        self.names: tuple[str, ...] = names
        self.parent: np.ndarray = _readonly(parent)
        self.num_classes: int = int(num_classes)
        self.num_nodes: int = n
        self.root: int = n - 1
        self._index = {name: i for i, name in enumerate(names)}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_parents(cls, parent_of: Mapping[str, str | None],
                     class_names: Sequence[str] | None = None) -> "Hierarchy":
        """Build from ``{node name: parent name or None for the root}``.

        Args:
            parent_of: every node once, in any order; children keep the mapping's order.
            class_names: the classes in dataset order; ``None`` uses the leaves in the mapping's
                order.  Mismatches raise one ValueError listing missing, extra and duplicate names.
        """
        names = [_as_name(k, "tree") for k in parent_of]
        pairs = [(k, None if v is None else _as_name(v, "tree")) for k, v in zip(names, parent_of.values())]
        return cls._from_pairs(pairs, class_names)

    @classmethod
    def from_nested(cls, tree: Mapping[str, Any], class_names: Sequence[str] | None = None,
                    source: str = "tree") -> "Hierarchy":
        """Build from the nested structure of a tree file (see module docstring)."""
        if not isinstance(tree, Mapping) or len(tree) != 1:
            got = f"a mapping with keys {list(tree)}" if isinstance(tree, Mapping) else type(tree).__name__
            raise ValueError(f"{source}: a tree must be a mapping with exactly one key (the root), "
                             f"got {got}")
        (root, value), = tree.items()
        pairs: list[tuple[str, str | None]] = []
        _walk(_as_name(root, source), value, None, pairs, set(), source)
        return cls._from_pairs(pairs, class_names, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike, class_names: Sequence[str] | None = None) -> "Hierarchy":
        """Load a ``.yaml``/``.yml``/``.json`` tree file (format in the module docstring)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".yaml", ".yml", ".json"):
            raise ValueError(f"tree file must end in .yaml, .yml or .json, got {str(path)!r}")
        text = path.read_text(encoding="utf-8")
        if suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml
            doc = yaml.safe_load(text)
        return cls.from_nested(doc, class_names, source=str(path))

    @classmethod
    def flat(cls, class_names: Sequence[str], root_name: str = "root") -> "Hierarchy":
        """Every class directly under one root (all LCA heights between classes are 1)."""
        return cls.from_parents({root_name: None, **{c: root_name for c in _class_list(class_names)}},
                                class_names)

    @classmethod
    def _from_pairs(cls, pairs: list[tuple[str, str | None]], class_names: Sequence[str] | None,
                    source: str = "tree") -> "Hierarchy":
        counts = Counter(name for name, _ in pairs)
        parent_of = dict(pairs)
        children: dict[str, list[str]] = {name: [] for name in parent_of}
        errors = []
        roots = [name for name, p in pairs if p is None]
        if len(roots) != 1:
            errors.append(f"exactly one root is required, found {roots}")
        for name, p in pairs:
            if p is not None:
                if p not in children:
                    errors.append(f"parent {p!r} of {name!r} is not a node")
                else:
                    children[p].append(name)
        leaves = [name for name in parent_of if not children[name]]
        if class_names is None:
            class_names = leaves
        class_names = _class_list(class_names)
        dup = sorted(k for k, c in counts.items() if c > 1)
        dup_cls = sorted(k for k, c in Counter(class_names).items() if c > 1)
        missing = [c for c in class_names if c not in parent_of]
        cls_set = set(class_names)
        extra = [leaf for leaf in leaves if leaf not in cls_set]
        internal = [c for c in class_names if c in children and children[c]]
        if dup:
            errors.append(f"duplicate node names: {dup}")
        if dup_cls:
            errors.append(f"duplicate class names: {dup_cls}")
        if missing:
            errors.append(f"classes missing from the tree: {missing}")
        if extra:
            errors.append(f"leaves that are not classes (extra): {extra}")
        if internal:
            errors.append(f"classes that are internal nodes (must be leaves): {internal}")
        if errors:
            raise ValueError(f"{source} does not match the class names: " + "; ".join(errors))
        order, seen, frontier = [], set(), [roots[0]]
        while frontier:  # breadth-first from the root
            nxt = []
            for node in frontier:
                if node in seen:
                    raise ValueError(f"{source}: cycle through node {node!r}")
                seen.add(node)
                order.append(node)
                nxt.extend(children[node])
            frontier = nxt
        unreached = [name for name in parent_of if name not in seen]
        if unreached:
            raise ValueError(f"{source}: nodes not connected to the root {roots[0]!r} (cycle?): {unreached}")
        internal_nodes = [x for x in order[1:] if children[x]]
        names = list(class_names) + internal_nodes + [roots[0]]
        index = {name: i for i, name in enumerate(names)}
        parent = [-1 if parent_of[name] is None else index[parent_of[name]] for name in names]
        return cls(names, parent, len(class_names))

    # ------------------------------------------------------------------ structure
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.names[: self.num_classes]

    def index(self, name: str) -> int:
        """Node index of ``name``."""
        if name not in self._index:
            raise KeyError(f"no node named {name!r}")
        return self._index[name]

    @cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in range(self.num_nodes)]
        for i, p in enumerate(self.parent):
            if p >= 0:
                out[p].append(i)
        return tuple(tuple(c) for c in out)

    def ancestors(self, node: int, include_self: bool = False) -> list[int]:
        """Node indices from ``node`` (if ``include_self``) or its parent up to the root."""
        out = [node] if include_self else []
        p = int(self.parent[node])
        while p >= 0:
            out.append(p)
            p = int(self.parent[p])
        return out

    @cached_property
    def depth(self) -> np.ndarray:
        """(N,) int64 distance from the root (root 0)."""
        return _readonly(np.array([len(self.ancestors(i)) for i in range(self.num_nodes)], dtype=np.int64))

    @cached_property
    def height(self) -> np.ndarray:
        """(N,) int64 longest downward path to a leaf (leaves 0)."""
        h = np.zeros(self.num_nodes, dtype=np.int64)
        for i in np.argsort(-self.depth, kind="stable"):  # deepest first
            if self.parent[i] >= 0:
                h[self.parent[i]] = max(h[self.parent[i]], h[i] + 1)
        return _readonly(h)

    @cached_property
    def descendant_matrix(self) -> np.ndarray:
        """(N, N) bool; ``[a, b]`` is True when ``b`` is ``a`` or lies below ``a``."""
        d = np.eye(self.num_nodes, dtype=bool)
        for i in range(self.num_nodes):
            d[self.ancestors(i), i] = True
        return _readonly(d)

    @property
    def leaf_matrix(self) -> np.ndarray:
        """(N, C) bool; ``[n, c]`` is True when class ``c`` lies below (or is) node ``n``."""
        return self.descendant_matrix[:, : self.num_classes]

    @cached_property
    def ancestor_indicator(self) -> np.ndarray:
        """(C, N-1) float64; row c marks c and its ancestors except the root."""
        return _readonly(self.descendant_matrix[: self.root, : self.num_classes].T.astype(np.float64))

    @cached_property
    def lca_matrix(self) -> np.ndarray:
        """(C, C) int64 node index of the lowest common ancestor (a class with itself: itself)."""
        c = self.num_classes
        lca = np.full((c, c), self.root, dtype=np.int64)
        for n in np.argsort(self.depth, kind="stable"):  # shallow first, deeper overwrite
            leaves = np.flatnonzero(self.leaf_matrix[n])
            lca[np.ix_(leaves, leaves)] = n
        return _readonly(lca)

    @cached_property
    def lca_height(self) -> np.ndarray:
        """(C, C) int64 ``h(i, j)`` = height of the LCA of classes i and j; 0 on the diagonal."""
        return _readonly(self.height[self.lca_matrix])

    @property
    def num_levels(self) -> int:
        """Number of severity levels: the deepest leaf's depth (levels ``0 .. num_levels-1``)."""
        return int(self.depth[: self.num_classes].max())

    def level_ancestor(self, level: int) -> np.ndarray:
        """(C,) int64 node of each class at ``level``: ``level`` steps up, never above depth 1.

        Level 0 is the class itself; a class whose depth is at most ``level`` maps to its
        top-level ancestor (the child of the root), so unbalanced trees keep their top groups.
        """
        if not isinstance(level, (int, np.integer)) or level < 0:
            raise ValueError(f"level must be an int >= 0, got {level!r}")
        out = np.arange(self.num_classes, dtype=np.int64)
        for _ in range(int(level)):
            up = self.parent[out]
            out = np.where(self.depth[out] > 1, up, out)
        return out

    # ------------------------------------------------------------------ export
    def to_nested(self) -> dict[str, Any]:
        """Nested mapping in the tree-file format (leaves ``None``)."""
        def sub(n: int) -> Any:
            kids = self.children[n]
            return {self.names[k]: sub(k) for k in kids} if kids else None
        return {self.names[self.root]: sub(self.root)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the tree to ``.yaml``/``.yml``/``.json`` (readable by :meth:`from_file`)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            path.write_text(json.dumps(self.to_nested(), indent=1), encoding="utf-8")
        elif suffix in (".yaml", ".yml"):
            import yaml
            path.write_text(yaml.safe_dump(self.to_nested(), sort_keys=False), encoding="utf-8")
        else:
            raise ValueError(f"path must end in .yaml, .yml or .json, got {str(path)!r}")

    def __repr__(self) -> str:
        return (f"Hierarchy(num_classes={self.num_classes}, num_nodes={self.num_nodes}, "
                f"root={self.names[self.root]!r}, num_levels={self.num_levels})")


def _class_list(class_names: Sequence[str]) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, (Sequence, np.ndarray)):
        raise TypeError(f"class_names must be a sequence of strings, got {type(class_names).__name__}")
    return [_as_name(c, "class_names") for c in class_names]


def _walk(name: str, value: Any, parent: str | None, out: list, active: set, source: str) -> None:
    out.append((name, parent))
    if value is None:
        return
    if not isinstance(value, (list, Mapping)):
        raise TypeError(f"{source}: children of {name!r} must be null, a list or a mapping, "
                        f"got {type(value).__name__} {value!r}")
    if id(value) in active:
        raise ValueError(f"{source}: cycle below node {name!r} (a YAML alias refers to itself)")
    if len(value) == 0:
        raise ValueError(f"{source}: node {name!r} has an empty list of children; use null for a leaf")
    active.add(id(value))
    items: list[tuple[Any, Any]] = []
    for item in (value.items() if isinstance(value, Mapping) else value):
        if isinstance(value, Mapping):
            items.append(item)
        elif isinstance(item, Mapping):
            items.extend(item.items())
        else:
            items.append((item, None))
    for child, sub in items:
        _walk(_as_name(child, source), sub, name, out, active, source)
    active.discard(id(value))


# ---------------------------------------------------------------------- shipped trees
def shipped_trees() -> list[str]:
    """Names accepted by :func:`load_shipped`."""
    return sorted(p.stem for p in TREES_DIR.glob("*.yaml"))


def load_shipped(name: str, class_names: Sequence[str]) -> Hierarchy:
    """Load ``hdl/trees/<name>.yaml`` with leaves in the order of ``class_names``.

    Shipped: ``digits`` (flat, classes '0'..'9'), ``fashion_mnist``, ``cifar10``, ``cifar100``
    (100 -> 20 official superclasses -> 8 -> 4 -> 2 -> root; the groups above the 20
    superclasses are HDL's own choice).
    """
    available = shipped_trees()
    if name not in available:
        raise ValueError(f"name must be one of {available}, got {name!r}")
    return Hierarchy.from_file(TREES_DIR / f"{name}.yaml", class_names)


def load_hierarchy(spec: str | os.PathLike, class_names: Sequence[str],
                   cache_dir: str | os.PathLike | None = None) -> Hierarchy:
    """One entry point for configs: ``spec`` is ``'flat'``, ``'wordnet'`` (:func:`from_wordnet`
    with default overrides), a shipped tree name (:func:`shipped_trees`) or a path to a
    ``.yaml``/``.yml``/``.json`` tree file.
    """
    text = os.fspath(spec)
    if text == "flat":
        return Hierarchy.flat(class_names)
    if text == "wordnet":
        return from_wordnet(class_names, cache_dir=cache_dir)
    if text in shipped_trees():
        return load_shipped(text, class_names)
    if Path(text).suffix.lower() in (".yaml", ".yml", ".json"):
        if not Path(text).is_file():
            raise FileNotFoundError(f"tree file {text!r} does not exist")
        return Hierarchy.from_file(text, class_names)
    raise ValueError(f"hierarchy spec must be 'flat', 'wordnet', one of {shipped_trees()} or a "
                     f".yaml/.yml/.json path, got {text!r}")


def cifar100_fine_to_coarse() -> dict[str, str]:
    """The official CIFAR-100 fine class name -> superclass name mapping (100 entries)."""
    return json.loads((TREES_DIR / "cifar100_coarse.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- WordNet
WORDNET_OVERRIDES: dict[str, str] = {
    # Lower-cased class name -> WordNet noun synset, for the Fashion-MNIST, CIFAR-10 and CIFAR-100
    # names without a synset or whose first noun sense is not the pictured object.
    "t-shirt/top": "jersey.n.03", "ankle boot": "boot.n.01", "aquarium_fish": "fish.n.01",
    "beaver": "beaver.n.07", "castle": "castle.n.02", "cloud": "cloud.n.02",
    "dolphin": "dolphin.n.02", "flatfish": "flatfish.n.02", "leopard": "leopard.n.02",
    "lobster": "lobster.n.02", "maple_tree": "maple.n.02", "otter": "otter.n.02",
    "plate": "plate.n.04", "raccoon": "raccoon.n.02", "ray": "ray.n.07", "seal": "seal.n.09",
    "shrew": "shrew.n.02", "skunk": "skunk.n.04", "table": "table.n.02",
    "television": "television_receiver.n.01", "tiger": "tiger.n.02", "trout": "trout.n.02",
    "turtle": "turtle.n.02", "whale": "whale.n.02",
}

_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
    "adj.ppl"
).split()
_WORDNET_FILES = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb",
                  "data.adj", "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc",
                  "verb.exc")
_INSTALL_HINT = ("install WordNet with `apt-get install wordnet-base wordnet-sense-index` (files in "
                 "/usr/share/wordnet) and nltk with `pip install nltk`")


def _default_cache_dir() -> Path:
    return Path(os.environ.get("HDL_CACHE_DIR", Path.home() / ".cache" / "hdl"))


def prepare_wordnet_dir(cache_dir: str | os.PathLike | None = None,
                        source: str | os.PathLike = "/usr/share/wordnet") -> Path:
    """Copy the WordNet 3.0 database files into ``<cache_dir>/nltk_data/corpora/wordnet``.

    Adds the 45-line ``lexnames`` table nltk needs (Debian ships none).  Files are copied, not
    linked, because nltk refuses paths that resolve outside its data folders.  Idempotent.

    Args:
        cache_dir: defaults to ``$HDL_CACHE_DIR`` or ``~/.cache/hdl``.
        source: folder with ``data.noun``, ``index.noun``, ... (Debian: /usr/share/wordnet).
    Returns:
        The ``nltk_data`` folder.
    """
    source = Path(source)
    if not (source / "data.noun").is_file():
        raise FileNotFoundError(f"WordNet database not found in {source}: {_INSTALL_HINT}")
    data = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    data = data / "nltk_data"
    target = data / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for name in _WORDNET_FILES:
        src, dst = source / name, target / name
        if src.is_file() and (not dst.is_file() or dst.stat().st_size != src.stat().st_size):
            shutil.copyfile(src, dst)
    lex = "".join(f"{i:02d}\t{n}\t{ {'noun': 1, 'verb': 2, 'adj': 3, 'adv': 4}[n.split('.')[0]] }\n"
                  for i, n in enumerate(_LEXNAMES))
    if not (target / "lexnames").is_file() or (target / "lexnames").read_text() != lex:
        (target / "lexnames").write_text(lex)
    return data


@lru_cache(maxsize=2)
def _wordnet_reader(data_dir: str):
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as e:
        raise ImportError(f"from_wordnet needs nltk: {_INSTALL_HINT}") from e
    if data_dir not in nltk.data.path:
        nltk.data.path.append(data_dir)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return WordNetCorpusReader(str(Path(data_dir) / "corpora" / "wordnet"), None)


def _resolve_synset(wn, name: str, overrides: Mapping[str, str]):
    key = name.strip().lower()
    if key in overrides:
        try:
            return wn.synset(overrides[key])
        except Exception as e:  # nltk raises WordNetError or ValueError for unknown names
            raise ValueError(f"overrides[{key!r}] = {overrides[key]!r} is not a WordNet synset") from e
    for cand in (key.replace(" ", "_"), key.replace("-", "_").replace(" ", "_"),
                 key.removesuffix("_tree"), key.split("/")[0]):
        found = wn.synsets(cand, pos="n")
        if found:
            return found[0]
    return None


def from_wordnet(class_names: Sequence[str], overrides: Mapping[str, str] | None = None,
                 cache_dir: str | os.PathLike | None = None, collapse_unary: bool = True) -> Hierarchy:
    """Build a tree from WordNet noun hypernyms, pruned to ``class_names``.

    Each class maps to a synset: ``overrides`` (lower-cased class name -> synset name such as
    ``'dog.n.01'``, merged over :data:`WORDNET_OVERRIDES`), else the first noun sense of the name
    (spaces and hyphens as underscores, then without a ``_tree`` suffix, then the part before a
    ``/``).  A synset's path to the root is its longest hypernym path (the first among equals);
    where paths of different classes meet, the first class (in class order) fixes the parents, so
    the result is a tree.  The class is a leaf under its synset's node; with ``collapse_unary``
    every internal node with a single child is removed (and the root moves down while it has one
    child).  Internal node names are synset names.

    Raises ImportError/FileNotFoundError naming what to install when nltk or WordNet is absent,
    and ValueError listing the class names without a synset.
    """
    names = _class_list(class_names)
    table = {**WORDNET_OVERRIDES, **{k.lower(): v for k, v in (overrides or {}).items()}}
    wn = _wordnet_reader(str(prepare_wordnet_dir(cache_dir)))
    synsets = {c: _resolve_synset(wn, c, table) for c in names}
    unresolved = [c for c, s in synsets.items() if s is None]
    if unresolved:
        raise ValueError(f"class names without a WordNet noun synset: {unresolved}; pass "
                         f"overrides={{'<name>': '<synset such as dog.n.01>'}}")
    parent_of: dict[str, str | None] = {}
    for c in names:
        path = max(synsets[c].hypernym_paths(), key=len)  # root ... synset
        chain = [s.name() for s in path]
        parent_of[c] = chain[-1]
        for child, par in zip(reversed(chain), reversed([None] + chain[:-1])):
            if child in parent_of:
                break
            parent_of[child] = par
    if collapse_unary:
        parent_of = _collapse_unary(parent_of, set(names))
    return Hierarchy.from_parents(parent_of, names)


def _collapse_unary(parent_of: dict[str, str | None], leaves: set[str]) -> dict[str, str | None]:
    kids: dict[str, list[str]] = {n: [] for n in parent_of}
    for n, p in parent_of.items():
        if p is not None:
            kids[p].append(n)
    root = next(n for n, p in parent_of.items() if p is None)
    while len(kids[root]) == 1 and kids[root][0] not in leaves:
        root = kids[root][0]

    def keep_parent(n: str) -> str | None:
        p = parent_of[n]
        while p is not None and len(kids[p]) == 1 and p != root:
            p = parent_of[p]
        return p

    out: dict[str, str | None] = {root: None}
    for n in parent_of:
        if n == root or (n not in leaves and len(kids[n]) == 1):
            continue
        anc = n
        while anc != root and anc is not None:  # drop nodes above the new root
            anc = parent_of[anc]
        if anc is None:
            continue
        out[n] = keep_parent(n)
    return out
