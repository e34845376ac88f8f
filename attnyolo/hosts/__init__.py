"""Detection codebases attnyolo plugs into ("hosts"): Ultralytics 8 (:mod:`.ultralytics`) and the original YOLOv5
v7.0 (:mod:`.yolov5`), behind one small interface (:mod:`.base`). Importing this package imports neither host."""
