import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hdl.hierarchy import (Hierarchy, cifar100_fine_to_coarse, from_wordnet, load_hierarchy,
                           load_shipped, shipped_trees)

CLASSES = ["a1", "a2", "b1", "b2", "b3"]
TREE = {"root": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"]}}
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def two_level():
    return Hierarchy.from_nested(TREE, CLASSES)


def test_two_level_structure():
    h = two_level()
    assert h.names == ("a1", "a2", "b1", "b2", "b3", "A", "B", "root")
    assert h.parent.tolist() == [5, 5, 6, 6, 6, 7, 7, -1]
    assert h.depth.tolist() == [2, 2, 2, 2, 2, 1, 1, 0]
    assert h.height.tolist() == [0, 0, 0, 0, 0, 1, 1, 2]
    assert h.ancestors(3) == [6, 7]
    assert h.num_levels == 2
    expected = np.array([[0, 1, 2, 2, 2], [1, 0, 2, 2, 2], [2, 2, 0, 1, 1], [2, 2, 1, 0, 1],
                         [2, 2, 1, 1, 0]])
    np.testing.assert_array_equal(h.lca_height, expected)
    assert h.lca_matrix[0, 1] == 5 and h.lca_matrix[0, 2] == 7 and h.lca_matrix[3, 3] == 3
    assert h.leaf_matrix[6].tolist() == [False, False, True, True, True]
    assert h.level_ancestor(1).tolist() == [5, 5, 6, 6, 6]
    assert h.ancestor_indicator.shape == (5, 7)
    assert h.ancestor_indicator[2].tolist() == [0, 0, 1, 0, 0, 0, 1]


def test_class_order_follows_class_names_not_file():
    h = Hierarchy.from_nested(TREE, ["b3", "a1", "b1", "a2", "b2"])
    assert h.class_names == ("b3", "a1", "b1", "a2", "b2")
    assert h.lca_height[0, 2] == 1 and h.lca_height[0, 1] == 2


def test_default_class_order_is_file_order_and_formats_agree():
    nested_forms = [
        {"root": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"]}},
        {"root": [{"A": {"a1": None, "a2": None}}, {"B": ["b1", {"b2": None}, "b3"]}]},
    ]
    for tree in nested_forms:
        h = Hierarchy.from_nested(tree)
        assert h.names == two_level().names
        assert h.parent.tolist() == two_level().parent.tolist()


def test_save_and_load_roundtrip(tmp_path):
    h = two_level()
    for suffix in (".yaml", ".json"):
        h.save(tmp_path / f"t{suffix}")
        g = Hierarchy.from_file(tmp_path / f"t{suffix}", CLASSES)
        assert g.names == h.names and g.parent.tolist() == h.parent.tolist()


def test_unbalanced_levels_stop_at_top_groups():
    h = load_shipped("fashion_mnist", FASHION)
    assert h.num_levels == 2
    top = [h.names[i] for i in h.level_ancestor(1)]
    assert top == ["tops", "Trouser", "tops", "Dress", "tops", "footwear", "tops", "footwear", "Bag",
                   "footwear"]
    assert [h.names[i] for i in h.level_ancestor(5)] == top
    assert h.lca_height[FASHION.index("Coat"), FASHION.index("Shirt")] == 1
    assert h.lca_height[FASHION.index("Coat"), FASHION.index("Dress")] == 2


def test_flat():
    h = Hierarchy.flat(["x", "y", "z"])
    assert h.names == ("x", "y", "z", "root")
    np.testing.assert_array_equal(h.lca_height, 1 - np.eye(3, dtype=int))


@pytest.mark.parametrize("tree, classes, message", [
    ({"root": ["a1", "a2"], "other": ["b1"]}, None, "exactly one key"),
    ({"root": {"A": ["a1", "a2"], "B": ["b1", "b2"]}}, CLASSES, "missing from the tree: ['b3']"),
    ({"root": {"A": ["a1", "a2", "zz"], "B": ["b1", "b2", "b3"]}}, CLASSES, "(extra): ['zz']"),
    ({"root": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3", "a1"]}}, CLASSES, "duplicate node names: ['a1']"),
    ({"root": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"]}}, CLASSES + ["A"], "internal nodes"),
    ({"root": {"A": ["a1", "a2"], "B": []}}, None, "empty list"),
    ({"root": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"]}}, ["a1", "a1", "a2", "b1", "b2", "b3"],
     "duplicate class names: ['a1']"),
])
def test_validation_errors(tree, classes, message):
    with pytest.raises(ValueError) as e:
        Hierarchy.from_nested(tree, classes)
    assert message in str(e.value)


def test_errors_are_listed_together():
    with pytest.raises(ValueError) as e:
        Hierarchy.from_nested({"root": {"A": ["a1", "zz"], "B": ["b1", "b2", "b3", "b1"]}}, CLASSES)
    msg = str(e.value)
    assert "['a2']" in msg and "['zz']" in msg and "['b1']" in msg


def test_yaml_cycle_and_bad_names(tmp_path):
    p = tmp_path / "cyc.yaml"
    p.write_text("root: &x\n  A: *x\n")
    with pytest.raises(ValueError, match="cycle"):
        Hierarchy.from_file(p)
    p.write_text("root: [1.5, b]\n")
    with pytest.raises(TypeError, match="strings"):
        Hierarchy.from_file(p)
    p.write_text("root: [0, 1]\n")
    assert Hierarchy.from_file(p, [1, 0]).class_names == ("1", "0")
    with pytest.raises(ValueError, match=".yaml"):
        Hierarchy.from_file(tmp_path / "x.txt")


def test_constructor_checks_parent_array():
    with pytest.raises(ValueError, match="cycle"):
        Hierarchy(["a", "b", "X", "Y", "r"], [2, 2, 3, 2, -1], 2)
    with pytest.raises(ValueError, match="last node"):
        Hierarchy(["a", "r", "b"], [1, -1, 1], 2)
    with pytest.raises(ValueError, match="exactly the leaves"):
        Hierarchy(["a", "b", "X", "r"], [3, 0, 3, -1], 2)


def test_shipped_trees():
    assert set(shipped_trees()) >= {"digits", "fashion_mnist", "cifar10", "cifar100"}
    d = load_shipped("digits", list(range(10)))
    assert d.class_names == tuple(str(i) for i in range(10)) and d.num_nodes == 11
    c10 = load_shipped("cifar10", CIFAR10)
    assert c10.class_names == tuple(CIFAR10)
    assert c10.lca_height[CIFAR10.index("cat"), CIFAR10.index("dog")] < \
        c10.lca_height[CIFAR10.index("cat"), CIFAR10.index("truck")]
    with pytest.raises(ValueError, match="must be one of"):
        load_shipped("imagenet", CIFAR10)
    with pytest.raises(ValueError, match="missing"):
        load_shipped("cifar10", CIFAR10[:-1] + ["lorry"])


def test_load_hierarchy_spec(tmp_path):
    assert load_hierarchy("flat", CLASSES).num_nodes == 6
    assert load_hierarchy("cifar10", CIFAR10).num_levels == 3
    two_level().save(tmp_path / "t.json")
    assert load_hierarchy(tmp_path / "t.json", CLASSES).names == two_level().names
    with pytest.raises(ValueError, match="spec must be"):
        load_hierarchy("tree", CLASSES)
    with pytest.raises(FileNotFoundError):
        load_hierarchy(tmp_path / "none.yaml", CLASSES)


def test_parent_array_is_copied():
    parent = np.array([2, 2, -1])
    Hierarchy(["a", "b", "r"], parent, 2)
    parent[0] = 2  # still writable


def test_cifar100_tree_matches_official_superclasses():
    coarse = cifar100_fine_to_coarse()
    fine = sorted(coarse)  # the meta file lists the fine names alphabetically
    assert len(fine) == 100 and list(coarse) == fine
    h = load_shipped("cifar100", fine)
    assert h.num_classes == 100 and set(h.depth[:100].tolist()) == {5}
    sup = h.level_ancestor(1)
    assert len(set(sup.tolist())) == 20
    assert all(h.names[s] == coarse[f] for f, s in zip(fine, sup))
    assert sorted(np.bincount(sup - sup.min()).tolist()) == [5] * 20
    assert [len(set(h.level_ancestor(lv).tolist())) for lv in (2, 3, 4)] == [8, 4, 2]
    assert "aquarium_fish" in fine and "maple_tree" in fine


def _wordnet_ready():
    return importlib.util.find_spec("nltk") is not None and Path("/usr/share/wordnet/data.noun").is_file()


@pytest.mark.skipif(not _wordnet_ready(),
                    reason="needs nltk (pip) and WordNet (apt-get install wordnet-base wordnet-sense-index)")
def test_wordnet_tree(tmp_path):
    # one test: loading the WordNet index takes a few seconds
    h = from_wordnet(CIFAR10, cache_dir=tmp_path)
    assert h.class_names == tuple(CIFAR10)
    assert (tmp_path / "nltk_data" / "corpora" / "wordnet" / "lexnames").is_file()
    i = CIFAR10.index
    assert h.lca_height[i("cat"), i("dog")] < h.lca_height[i("cat"), i("frog")] \
        < h.lca_height[i("cat"), i("truck")]
    assert h.lca_height[i("automobile"), i("truck")] < h.lca_height[i("automobile"), i("ship")]
    assert all(len(c) >= 2 for c in h.children[h.num_classes:])  # unary nodes collapsed
    g = from_wordnet(["T-shirt/top", "Sandal", "Ankle boot"], cache_dir=tmp_path, collapse_unary=False)
    assert g.names[g.root] == "entity.n.01" and "jersey.n.03" in g.names
    with pytest.raises(ValueError, match="qwxzt"):
        from_wordnet(["cat", "qwxzt"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="not a WordNet synset"):
        from_wordnet(["cat", "dog"], overrides={"cat": "nocat.n.01"}, cache_dir=tmp_path)
