"""The face stage's models: tracking the face through a clip, the dlib models of the `cpu` profile, S3FD, FAN and BiSeNet of the `full` profile, and masks drawn from landmarks."""
