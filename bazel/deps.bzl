"""xjob_dependencies(): everything a workspace needs to build against xjob, offline.

Call it from a WORKSPACE after `local_repository(name = "xjob", ...)`:

    load("@xjob//bazel:deps.bzl", "xjob_dependencies")
    xjob_dependencies()

It declares Bazel's own helper repositories (rules_cc, rules_java,
remote_coverage_tools) as small local stand-ins, so that Debian's
bazel-bootstrap never tries to download them, and the system libraries
(Debian packages under /usr) as cc_library targets. A repository the caller
has already declared under the same name is left alone.
"""

def _standin_impl(ctx):
    # The stand-ins live beside this file; find them through a label of this
    # repository so the rule works whatever the consuming workspace is.
    here = ctx.path(Label("@xjob//bazel:deps.bzl")).dirname
    source = here.get_child(ctx.attr.folder)
    for entry in source.readdir():
        ctx.symlink(entry, entry.basename)

_standin = repository_rule(
    implementation = _standin_impl,
    attrs = {"folder": attr.string(mandatory = True)},
    local = True,
)

# Debian packages that provide each system library, named in the error a
# missing header gives and installed by the README's set-up commands.
_SYSTEM_LIBRARIES = {
    "xjob_xtensor": "/usr/include",
    "xjob_tbb": "/usr/include",
    "xjob_fmt": "/usr/include",
    "xjob_catch2": "/usr/include",
    "xjob_cereal": "/usr/include",
    "xjob_cli11": "/usr/include",
    "xjob_openssl": "/usr/include",
    "xjob_nlohmann_json": "/usr/include",
    "xjob_random123": "/usr/include",
    "xjob_openmpi": "/usr/lib/x86_64-linux-gnu/openmpi",
}

def xjob_dependencies():
    """Declares the repositories xjob needs; safe to call more than once."""
    existing = native.existing_rules()
    for name in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        if name not in existing:
            _standin(name = name, folder = name)
    for name, path in _SYSTEM_LIBRARIES.items():
        if name not in existing:
            native.new_local_repository(
                name = name,
                path = path,
                build_file = "@xjob//bazel:third_party/%s.BUILD" % name[len("xjob_"):],
            )
