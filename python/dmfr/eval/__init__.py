"""Evaluation protocols: verification, template 1:1 (IJB), cross-pose/quality, identification."""
