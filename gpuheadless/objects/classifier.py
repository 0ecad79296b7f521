"""The object classifier's input and output (spec/object-classification.md §4.3-§4.4)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import UserError
from ..forest.model import Forest
from ..forest.predict import predict_cpu


def feature_matrix(features: Mapping[str, Mapping[str, np.ndarray]], selected: Mapping[str, list[str]]) -> np.ndarray:
    """The classifier's rows for one time point, objects 0..n (row 0 the background).

    Plugins in ``sorted`` order, then their selected features in ``sorted`` order, each with its
    columns as computed; float32, NaN and infinities replaced by 0, as ilastik does.

    Raises
    ------
    UserError
        A selected feature that was not computed (a name no plugin knows).
    """
    columns = []
    for plugin in sorted(selected):
        for name in sorted(selected[plugin]):
            if name not in features.get(plugin, {}):
                raise UserError(f"the project selects the object feature '{name}' of '{plugin}', which gpuheadless "
                                "does not compute (a damaged project?)")
            columns.append(np.asarray(features[plugin][name], dtype=np.float32))
    # no feature selected: no columns, still one row per object (the default features have them)
    rows = max((len(v) for tables in features.values() for v in tables.values()), default=1)
    matrix = np.concatenate(columns, axis=1) if columns else np.zeros((rows, 0), np.float32)
    matrix[~np.isfinite(matrix)] = 0.0
    return matrix


def object_probabilities(forest: Forest | None, matrix: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n + 1, n_classes)`` probabilities; the background row and a lone background are zeros.

    Columns follow the forest's labels (label k in column k - 1).

    Raises
    ------
    UserError
        The rows have another number of features than the forest expects.
    """
    out = np.zeros((matrix.shape[0], n_classes), dtype=np.float32)
    if forest is None or matrix.shape[0] <= 1:
        return out
    if matrix.shape[1] != forest.n_features:  # the project's selection and forest disagree, or the channels differ
        raise UserError(f"the project's object classifier expects {forest.n_features} features, its selected features "
                        f"give {matrix.shape[1]} here (a damaged project, or inputs with other channels than its training data)")
    scores = predict_cpu(forest, matrix)
    for column, label in enumerate(forest.labels):
        if 1 <= label <= n_classes:
            out[:, int(label) - 1] = scores[:, column]
    out[0] = 0.0
    return out


def predicted_classes(probabilities: np.ndarray, classified: bool = True) -> np.ndarray:
    """1 + argmax per object (first maximum wins), 0 for the background; all 0 without a classifier."""
    classes = (np.argmax(probabilities, axis=1) + 1).astype(np.uint32)
    classes[0] = 0
    if not classified:
        classes[:] = 0
    return classes
