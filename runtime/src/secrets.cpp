#include "mnemo/runtime/secrets.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime {

caf::expected<std::string> read_secret_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return make_error(errc::invalid_argument,
                      "cannot read the secret file '" + path + "'");
  std::string text{std::istreambuf_iterator<char>{in},
                   std::istreambuf_iterator<char>{}};
  if (in.bad())
    return make_error(errc::invalid_argument,
                      "cannot read the secret file '" + path + "'");
  auto end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos)
    return make_error(errc::invalid_argument,
                      "the secret file '" + path + "' is empty");
  text.resize(end + 1);
  return text;
}

caf::expected<std::string> resolve_secret(const std::string& what,
                                          const std::string& value,
                                          const std::string& file,
                                          const char* env) {
  if (!value.empty() && !file.empty())
    return make_error(errc::invalid_argument,
                      what + " and " + what + "-file are exclusive");
  if (!file.empty()) return read_secret_file(file);
  if (!value.empty()) return value;
  if (env != nullptr)
    if (const char* from_env = std::getenv(env)) return std::string{from_env};
  return std::string{};
}

}  // namespace mnemo::runtime
