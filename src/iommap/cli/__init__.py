"""The ``iommap`` command line, in layers:

- :mod:`.status`: the exit statuses;
- :mod:`.output`: the one stderr writer, stdout that fails cleanly, the
  column table and a writer per format (table, raw, JSON);
- :mod:`.paths`: which files: paths, lists, ranges, the walk;
- :mod:`.frame`: the parser, usage errors, shared options, running a command;
- :mod:`.commands`: info, warm and evict; :mod:`.lockd`: lock;
- :mod:`.demo`: the demo.

Nothing is imported here: ``iommap info`` loads only the modules it uses.
"""
