#include "test_support.hpp"

#include <map>

#include <msgpack.hpp>

namespace mnemo::test {

persistence::new_event make_event(const std::string& type,
                                  const std::string& value) {
  persistence::new_event ev;
  ev.type = type;
  msgpack::sbuffer buf;
  msgpack::pack(buf, std::map<std::string, std::string>{{"v", value}});
  ev.payload.assign(buf.data(), buf.data() + buf.size());
  return ev;
}

std::string event_value(const persistence::event_envelope& env) {
  auto handle = msgpack::unpack(
      reinterpret_cast<const char*>(env.payload.data()), env.payload.size());
  auto map = handle.get().as<std::map<std::string, std::string>>();
  return map.at("v");
}

}  // namespace mnemo::test
