"""What the runnable jobs in jobs/ share: storage, the input pipeline, the model, training in a barrier task."""
