"""A model over labelled studies: the metrics, the report and its pictures, mimics."""
