"""project subpackage."""
