//! A scripted TrainingControl for testing callbacks without training.
