#include "mnemo/persistence/dead_letter_store.hpp"

#include <chrono>

#include <msgpack.hpp>

#include "lmdb_util.hpp"
#include "mnemo/persistence/journal.hpp"

namespace mnemo::persistence {

namespace {

// First byte of every value: the layout of the msgpack part that follows.
constexpr char dead_letter_format = 1;

// Fields of layout 1, in array order (after projection and position, which
// are the key).
constexpr uint32_t dead_letter_fields = 6;

std::string encode(const dead_letter& x) {
  msgpack::sbuffer buf;
  buf.write(&dead_letter_format, 1);
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(dead_letter_fields);
  pk.pack(x.stream_id);
  pk.pack(x.sequence);
  pk.pack(x.event_type);
  pk.pack(x.error);
  pk.pack(x.attempts);
  pk.pack(x.parked_at_ms);
  return std::string{buf.data(), buf.size()};
}

error corrupt(std::string_view projection, uint64_t position,
              const std::string& what) {
  return error{errc::corrupt_record,
               "corrupt dead letter of projection '" + std::string{projection} +
                   "' at position " + std::to_string(position) + ": " + what +
                   "; remove it (dead_letter_store::remove) or restore a "
                   "backup"};
}

std::string as_str(const msgpack::object& o) {
  if (o.type != msgpack::type::STR) throw msgpack::type_error();
  return std::string{o.via.str.ptr, o.via.str.size};
}

// Decodes a value of mnemo.dead_letters. This is where msgpack exceptions
// of dead letters are translated.
error decode(std::string_view projection, uint64_t position,
             std::string_view value, dead_letter& out) {
  if (value.empty()) return corrupt(projection, position, "empty value");
  if (value[0] != dead_letter_format)
    return corrupt(projection, position,
                   "unknown layout " +
                       std::to_string(static_cast<uint8_t>(value[0])) +
                       " (written by a newer build?)");
  try {
    size_t off = 0;
    auto handle = msgpack::unpack(value.data() + 1, value.size() - 1, off);
    const auto& obj = handle.get();
    // Later layouts of the same format byte may append fields.
    if (off != value.size() - 1 || obj.type != msgpack::type::ARRAY ||
        obj.via.array.size < dead_letter_fields)
      throw msgpack::type_error();
    const auto* f = obj.via.array.ptr;
    out.projection = std::string{projection};
    out.position = position;
    out.stream_id = as_str(f[0]);
    out.sequence = f[1].as<uint64_t>();
    out.event_type = as_str(f[2]);
    out.error = as_str(f[3]);
    out.attempts = f[4].as<uint32_t>();
    out.parked_at_ms = f[5].as<int64_t>();
    return {};
  } catch (const std::exception& e) {
    return corrupt(projection, position,
                   std::string{"undecodable value ("} + e.what() + ")");
  }
}

int64_t now_millis() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count();
}

error check_projection(std::string_view projection) {
  return check_name(projection, "projection name");
}

// Calls `f(position, value)` for the dead letters of `projection` from
// `from` on while `f` returns true.
template <class F>
error for_each(detail::txn_state& st, std::string_view projection,
               uint64_t from, F&& f) {
  // A read-only open of a directory that predates mnemo.dead_letters.
  if (st.dbs->dead_letters == 0) return {};
  cursor cur;
  if (auto err = cur.open(st, st.dbs->dead_letters)) return err;
  auto start = name_key(projection, from);
  MDB_val key = to_val(start);
  MDB_val val;
  auto rc = cur.get(key, val, MDB_SET_RANGE);
  for (; rc == 0; rc = cur.get(key, val, MDB_NEXT)) {
    auto k = to_view(key);
    if (!has_name(k, projection)) return {};
    if (!f(key_number(k), to_view(val))) return {};
  }
  if (rc != MDB_NOTFOUND) return st.check(rc, "mdb_cursor_get (dead letters)");
  return {};
}

}  // namespace

error dead_letter_store::park_in(write_txn& txn, dead_letter letter) {
  if (auto err = check_projection(letter.projection)) return err;
  if (letter.parked_at_ms == 0) letter.parked_at_ms = now_millis();
  auto& st = txn.state();
  auto key_bytes = name_key(letter.projection, letter.position);
  auto value = encode(letter);
  auto key = to_val(key_bytes);
  auto val = to_val(value);
  return st.check(mdb_put(st.txn, st.dbs->dead_letters, &key, &val, 0),
                  "mdb_put (dead letter)");
}

error dead_letter_store::park(dead_letter letter) {
  if (auto err = check_projection(letter.projection)) return err;
  return journal_->write(
      [&letter](write_txn& txn) { return park_in(txn, letter); });
}

expected<std::vector<dead_letter>> dead_letter_store::list_in(
    any_txn txn, std::string_view projection, uint64_t from_position,
    size_t limit) {
  if (auto err = check_projection(projection)) return err;
  std::vector<dead_letter> result;
  if (limit == 0) return result;
  error decode_err;
  auto err = for_each(txn.state(), projection, from_position,
                      [&](uint64_t pos, std::string_view value) {
                        decode_err = decode(projection, pos, value,
                                            result.emplace_back());
                        return !decode_err && result.size() < limit;
                      });
  if (err) return err;
  if (decode_err) return decode_err;
  return result;
}

expected<std::vector<dead_letter>> dead_letter_store::list(
    std::string_view projection, uint64_t from_position, size_t limit) const {
  expected<std::vector<dead_letter>> result{std::vector<dead_letter>{}};
  auto err = journal_->read([&](read_txn& txn) {
    result = list_in(txn, projection, from_position, limit);
    return error{};
  });
  if (err) return err;
  return result;
}

expected<std::optional<dead_letter>> dead_letter_store::get_in(
    any_txn txn, std::string_view projection, uint64_t position) {
  if (auto err = check_projection(projection)) return err;
  auto& st = txn.state();
  std::optional<dead_letter> result;
  if (st.dbs->dead_letters == 0) return result;
  auto key_bytes = name_key(projection, position);
  auto key = to_val(key_bytes);
  MDB_val val;
  auto rc = mdb_get(st.txn, st.dbs->dead_letters, &key, &val);
  if (rc == MDB_NOTFOUND) return result;
  if (auto err = st.check(rc, "mdb_get (dead letter)")) return err;
  if (auto err = decode(projection, position, to_view(val), result.emplace()))
    return err;
  return result;
}

expected<std::optional<dead_letter>> dead_letter_store::get(
    std::string_view projection, uint64_t position) const {
  expected<std::optional<dead_letter>> result{std::nullopt};
  auto err = journal_->read([&](read_txn& txn) {
    result = get_in(txn, projection, position);
    return error{};
  });
  if (err) return err;
  return result;
}

expected<bool> dead_letter_store::remove_in(write_txn& txn,
                                            std::string_view projection,
                                            uint64_t position) {
  if (auto err = check_projection(projection)) return err;
  auto& st = txn.state();
  auto key_bytes = name_key(projection, position);
  auto key = to_val(key_bytes);
  auto rc = mdb_del(st.txn, st.dbs->dead_letters, &key, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  if (auto err = st.check(rc, "mdb_del (dead letter)")) return err;
  return true;
}

expected<bool> dead_letter_store::remove(std::string_view projection,
                                         uint64_t position) {
  if (auto err = check_projection(projection)) return err;
  bool existed = false;
  auto err = journal_->write([&](write_txn& txn) -> error {
    auto res = remove_in(txn, projection, position);
    if (!res) return std::move(res).error();
    existed = *res;
    return {};
  });
  if (err) return err;
  return existed;
}

expected<uint64_t> dead_letter_store::count_in(any_txn txn,
                                               std::string_view projection) {
  if (auto err = check_projection(projection)) return err;
  uint64_t n = 0;
  auto err =
      for_each(txn.state(), projection, 0, [&n](uint64_t, std::string_view) {
        ++n;
        return true;
      });
  if (err) return err;
  return n;
}

expected<uint64_t> dead_letter_store::count(std::string_view projection) const {
  expected<uint64_t> result{uint64_t{0}};
  auto err = journal_->read([&](read_txn& txn) {
    result = count_in(txn, projection);
    return error{};
  });
  if (err) return err;
  return result;
}

}  // namespace mnemo::persistence
