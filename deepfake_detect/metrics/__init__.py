"""Scores from probabilities (exact AUC, Youden threshold, counts) and the plots of them."""
