"""The paper's analyses: Table 1 similarities, the modality probe, Fig. 5 and Fig. 6."""
