"""Random forests: the flat model, vigra-exact prediction, training and treelite exchange."""
