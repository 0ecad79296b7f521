"""The forest model: one flat node table for one or several vigra forests.

Semantics are vigra's (spec/object-classification.md §7.3): go left iff ``float32 x < threshold``
(compared in float64), leaves hold class distributions, each forest averages its trees in float32
and forests are combined weighted by their tree counts. Every other classifier is converted into
this form exactly: scikit-learn's ``x <= t`` becomes ``x < t'`` with ``t'`` the next float32 above
``t`` rounded down to float32, which decides every float32 input the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

LEAF = -1


@dataclass(frozen=True)
class Forest:
    """A random forest as flat arrays.

    Attributes
    ----------
    feature : (n_nodes,) int32
        Split column, or ``-1`` for a leaf.
    threshold : (n_nodes,) float64
        Go to ``left`` iff ``float32 x[feature] < threshold``.
    left, right : (n_nodes,) int32
        Child node indices (undefined for leaves).
    values : (n_nodes, n_classes) float64
        Class values of leaves (already multiplied by the leaf weight if the forest predicts
        weighted); zero rows for interior nodes.
    roots : (n_trees,) int32
        Root node of every tree, forest by forest.
    forest_tree_counts : (n_forests,) int32
        Trees per original forest; combination weights.
    labels : (n_classes,) uint32
        Label value of every class column.
    n_features : int
        Number of feature columns the forest expects.
    scratch : dict
        Derived layouts the prediction kernels build once and keep (not part of the model).
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    values: np.ndarray
    roots: np.ndarray
    forest_tree_counts: np.ndarray
    labels: np.ndarray
    n_features: int
    scratch: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_classes(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.feature.shape[0])

    def validate(self) -> None:
        """Check the node table is well formed (children in range, no cycles reachable)."""
        n = self.n_nodes
        interior = self.feature >= 0
        for name, child in (("left", self.left), ("right", self.right)):
            bad = interior & ((child < 0) | (child >= n))
            if bad.any():
                raise ValueError(f"{name} child out of range at node {int(np.argmax(bad))}")
        if (self.feature[interior] >= self.n_features).any():
            raise ValueError("a split uses a column beyond n_features")
        if (self.roots < 0).any() or (self.roots >= n).any():
            raise ValueError("a tree root is out of range")
        if int(self.forest_tree_counts.sum()) != self.n_trees:
            raise ValueError("forest tree counts do not add up to the number of trees")
        # Every tree must reach leaves: walk each tree once with an explicit stack.
        for root in self.roots:
            stack = [int(root)]
            steps = 0
            while stack:
                node = stack.pop()
                steps += 1
                if steps > n:
                    raise ValueError("the node table has a cycle")
                if self.feature[node] >= 0:
                    stack.extend((int(self.left[node]), int(self.right[node])))


def concatenate_trees(
    trees: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    forest_tree_counts: Sequence[int],
    labels: np.ndarray,
    n_features: int,
) -> Forest:
    """Build a :class:`Forest` from per-tree node arrays with tree-local child indices.

    Parameters
    ----------
    trees : sequence of (feature, threshold, left, right, values)
        One tuple per tree; node 0 is the root, children index the same tree.
    forest_tree_counts : sequence of int
    labels : (n_classes,) array
    n_features : int
    """
    offsets = np.cumsum([0] + [len(t[0]) for t in trees])
    feature = np.concatenate([t[0] for t in trees]).astype(np.int32)
    threshold = np.concatenate([t[1] for t in trees]).astype(np.float64)
    left = np.concatenate([np.where(t[0] >= 0, t[2] + off, -1) for t, off in zip(trees, offsets)]).astype(np.int32)
    right = np.concatenate([np.where(t[0] >= 0, t[3] + off, -1) for t, off in zip(trees, offsets)]).astype(np.int32)
    values = np.concatenate([t[4] for t in trees]).astype(np.float64)
    forest = Forest(
        feature=feature,
        threshold=threshold,
        left=left,
        right=right,
        values=values,
        roots=offsets[:-1].astype(np.int32),
        forest_tree_counts=np.asarray(forest_tree_counts, dtype=np.int32),
        labels=np.asarray(labels, dtype=np.uint32),
        n_features=int(n_features),
    )
    forest.validate()
    return forest


def float32_strict_upper_bound_for_le(t: np.ndarray) -> np.ndarray:
    """Thresholds ``t'`` such that ``x < t'`` equals ``x <= t`` for every float32 ``x``.

    ``t'`` is the float32 successor of the largest float32 not above ``t`` (returned as float64).
    """
    t = np.asarray(t, dtype=np.float64)
    down = t.astype(np.float32)
    too_high = down.astype(np.float64) > t
    down = np.where(too_high, np.nextafter(down, np.float32(-np.inf)), down).astype(np.float32)
    return np.nextafter(down, np.float32(np.inf)).astype(np.float64)


def from_sklearn(model: Any, labels: np.ndarray | None = None) -> Forest:
    """Convert a fitted :class:`sklearn.ensemble.RandomForestClassifier` exactly.

    Parameters
    ----------
    model : RandomForestClassifier
        Fitted on float32 features; its ``classes_`` are the label values unless ``labels`` is given.
    labels : array, optional
        Label value for each class column.
    """
    trees = []
    for est in model.estimators_:
        tree = est.tree_
        is_leaf = tree.children_left < 0
        feature = np.where(is_leaf, LEAF, tree.feature).astype(np.int32)
        threshold = np.where(is_leaf, 0.0, float32_strict_upper_bound_for_le(tree.threshold))
        value = tree.value[:, 0, :].astype(np.float64)
        sums = value.sum(axis=1, keepdims=True)
        value = np.where(is_leaf[:, None], value / np.where(sums > 0, sums, 1.0), 0.0)
        trees.append((feature, threshold, tree.children_left, tree.children_right, value))
    if labels is None:
        labels = np.asarray(model.classes_, dtype=np.uint32)
    return concatenate_trees(trees, [len(trees)], labels, model.n_features_in_)


def to_treelite(forest: Forest) -> Any:
    """Express ``forest`` as a treelite model (the exchange format).

    Each original vigra forest's trees keep their ``<`` splits and leaf distributions; the model
    averages tree outputs. With one forest, or forests of equal size, treelite's average equals
    the forest-count-weighted combination up to float rounding.
    """
    import treelite  # noqa: PLC0415

    mb = treelite.model_builder
    builder = mb.ModelBuilder(
        threshold_type="float64",
        leaf_output_type="float64",
        metadata=mb.Metadata(
            num_feature=forest.n_features,
            task_type="kMultiClf",
            average_tree_output=True,
            num_target=1,
            num_class=[forest.n_classes],
            leaf_vector_shape=(1, forest.n_classes),
        ),
        tree_annotation=mb.TreeAnnotation(num_tree=forest.n_trees, target_id=[0] * forest.n_trees, class_id=[-1] * forest.n_trees),
        postprocessor=mb.PostProcessorFunc(name="identity_multiclass"),
        base_scores=[0.0] * forest.n_classes,
        attributes={"labels": [int(v) for v in forest.labels], "forest_tree_counts": [int(v) for v in forest.forest_tree_counts]},
    )
    for root in forest.roots:
        builder.start_tree()
        stack = [int(root)]
        while stack:
            node = stack.pop()
            builder.start_node(node)
            if forest.feature[node] >= 0:
                builder.numerical_test(
                    int(forest.feature[node]),
                    float(forest.threshold[node]),
                    default_left=False,
                    opname="<",
                    left_child_key=int(forest.left[node]),
                    right_child_key=int(forest.right[node]),
                )
                stack.extend((int(forest.right[node]), int(forest.left[node])))
            else:
                builder.leaf([float(v) for v in forest.values[node]])
            builder.end_node()
        builder.end_tree()
    return builder.commit()


def from_treelite(model: Any) -> Forest:
    """Read a treelite classification forest back into a :class:`Forest`.

    Supports numerical tests with ``<`` (kept) and ``<=`` (converted exactly) and leaf vectors;
    models written by :func:`to_treelite` round-trip with their labels and forest structure.
    """
    import json  # noqa: PLC0415

    doc = json.loads(model.dump_as_json(pretty_print=False))
    n_features = int(doc["num_feature"])
    n_classes = int(doc["num_class"][0])
    attributes = doc.get("attributes") or {}
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    trees = []
    for tree in doc["trees"]:
        nodes = tree["nodes"]
        index = {node["node_id"]: i for i, node in enumerate(nodes)}
        count = len(nodes)
        feature = np.full(count, LEAF, dtype=np.int32)
        threshold = np.zeros(count)
        left = np.full(count, -1, dtype=np.int64)
        right = np.full(count, -1, dtype=np.int64)
        values = np.zeros((count, n_classes))
        for i, node in enumerate(nodes):
            if "leaf_value" in node:
                leaf = node["leaf_value"]
                values[i] = leaf if isinstance(leaf, list) else [leaf]
                continue
            op = node["comparison_op"]
            if op not in ("<", "<="):
                raise ValueError(f"unsupported treelite comparison {op!r}")
            feature[i] = node["split_feature_id"]
            t = float(node["threshold"])
            threshold[i] = t if op == "<" else float(float32_strict_upper_bound_for_le(np.array([t]))[0])
            left[i] = index[node["left_child"]]
            right[i] = index[node["right_child"]]
        trees.append((feature, threshold, left, right, values))
    labels = np.asarray(attributes.get("labels", list(range(1, n_classes + 1))), dtype=np.uint32)
    counts = attributes.get("forest_tree_counts", [len(trees)])
    return concatenate_trees(trees, counts, labels, n_features)
