"""Everything that knows about the `scenes` data set, in one place.

- `scene`: vocabulary, `SceneObject`, sampling, English/Chinese captions, one-attribute hard negatives
  (pure Python, cheap to import);
- `render`: the image and the radar map of a scene (numpy, Pillow);
- `generator`: `make_scenes`, which writes images, speech, radar maps and manifest rows;
- `qa`: questions answerable from a scene's objects, their answers, answer normalisation;
- `captions`: the caption parser and attribute scores of generated captions;
- `tasks`: the built-in downstream tasks (report-consistency, masked-attribute).

Submodules are imported by name so that a room needing QA or tasks does not load the generator.
"""
