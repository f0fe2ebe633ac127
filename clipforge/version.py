"""The version of clipforge's public API, in a module that imports nothing, so that every part of
clipforge (and a plugin's tests) can read it without importing the rest."""

#: "MAJOR.MINOR": the major number changes when a name of ``clipforge.__all__`` changes incompatibly,
#: the minor number when names are added (1.1: analyses as plugins, ``Analysis``, ``AnalysisSpec``,
#: ``AnalysisRun``, ``clipforge.analysis``, ``progress_bar``; ``Registry.resolve`` and ``build``; 1.2:
#: ``read_image``, ``existing_image``, ``component_option``, ``Backbone.captions``; 1.3: objectives,
#: ``Objective``, ``ObjectiveOptions``, ``Features``, the ``register_objectives`` hook, a prompt's
#: ``objectives`` and ``has_target``, ``Analysis.check``, and the layers: ``LayerError``, ``captured``,
#: ``channel_count``, ``channel_maps``, ``find_layer``, ``image_tower``, ``layer_shape``, ``list_layers``; 1.4:
#: the notebook's API: ``visualize``, ``invert`` taking objects, ``model``, ``ModelError``, ``backbone_of``,
#: the objective algebra ``Goal``, ``prompt``, ``channel``, ``neuron``, ``direction``, ``diversity``, ``image``,
#: ``objective``; ``Features.layer`` and ``channels``; ``list_layers`` and ``layer_shape`` take any model;
#: ``InversionResult.to_pil``, ``grid``, ``final`` and its Jupyter view; ``Registry.with_components``;
#: ``spec_path``; ``COLOR_MIX``; 1.5: readers: ``Reader``, the ``register_readers`` hook, ``ColourReading``,
#: ``MarkerReading``, ``CaptionReading``, ``DEFAULT_READER``, ``reader_field``, ``choose_reader``, ``ReaderChoice``)
API_VERSION = "1.5"

#: clipforge's own version (the distribution's), readable without importing torch (``clipforge --version``)
__version__ = "0.1.0"
