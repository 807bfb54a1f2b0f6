#pragma once

// Secrets (the cluster secret, the admin token) from a file or the
// environment instead of the command line, where `ps` shows them to every
// user of the machine.

#include <string>

#include <caf/expected.hpp>

namespace mnemo::runtime {

/// Reads the secret in file `path`: its content without trailing
/// whitespace (the newline an editor or `echo` adds). Errors
/// (`invalid_argument`): the file cannot be read, or holds nothing but
/// whitespace. The messages name the file, never its content.
caf::expected<std::string> read_secret_file(const std::string& path);

/// Resolves a secret given in at most one of three ways: on the command
/// line (`value`), in a file (`file`), or in the environment variable
/// `env` (used only when the other two are empty). `what` names the
/// options in errors ("--cluster.secret"). Errors (`invalid_argument`):
/// both `value` and `file` given, or the file's errors.
caf::expected<std::string> resolve_secret(const std::string& what,
                                          const std::string& value,
                                          const std::string& file,
                                          const char* env);

}  // namespace mnemo::runtime
