//! The shared monitor base of EarlyStopping, ReduceLROnPlateau and ModelCheckpoint.
