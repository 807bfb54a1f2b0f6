#pragma once

// A base for events without fields: msgpack's MSGPACK_DEFINE_MAP needs at
// least one field, and the event registry needs every payload to be a map.

#include <msgpack.hpp>

namespace orders {

/// Encodes as an empty msgpack map and decodes from any map (so fields
/// added in a later schema version are ignored). Derive each field-less
/// event from it: `struct order_accepted : empty_event {};`.
struct empty_event {
  template <class Packer>
  void msgpack_pack(Packer& pk) const {
    pk.pack_map(0);
  }
  void msgpack_unpack(const msgpack::object& o) {
    if (o.type != msgpack::type::MAP) throw msgpack::type_error{};
  }
  void msgpack_object(msgpack::object* o, msgpack::zone&) const {
    o->type = msgpack::type::MAP;
    o->via.map.size = 0;
    o->via.map.ptr = nullptr;
  }
};

}  // namespace orders
