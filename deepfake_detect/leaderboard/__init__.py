"""MLflow runs -> the seed's ``model_eval.csv`` table (no TensorFlow anywhere in here)."""
