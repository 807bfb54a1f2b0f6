// The head record of a stream (head_record.hpp): its encoding, and reading
// the current one in a transaction. Owns no state.

#include "head_record.hpp"

#include <string>

#include "head_log.hpp"

namespace mnemo::persistence {

void encode_head(const head_record& head, char* out) noexcept {
  put_be64(out, head.highest);
  put_be64(out + 8, head.deleted_to);
  put_be64(out + 16, head.last_position);
}

bool decode_head(const MDB_val& val, head_record& out) noexcept {
  if (val.mv_size != 24) return false;
  auto* p = static_cast<const char*>(val.mv_data);
  out.highest = get_be64(p);
  out.deleted_to = get_be64(p + 8);
  out.last_position = get_be64(p + 16);
  return true;
}

error corrupt_head(std::string_view stream) {
  return error{errc::corrupt_record, "corrupt head record of stream '" +
                                         std::string{stream} +
                                         "'; restore a backup"};
}

error read_head(detail::txn_state& st, std::string_view stream,
                head_record& out) {
  out = head_record{};
  bool logged = false;
  if (auto err = find_logged_head(st, stream, out, logged)) return err;
  if (logged) return {};
  auto key = to_val(stream);
  MDB_val val;
  auto rc = mdb_get(st.txn, st.dbs->streams, &key, &val);
  if (rc == MDB_NOTFOUND) return {};
  if (auto err = st.check(rc, "mdb_get (stream head)")) return err;
  if (!decode_head(val, out)) return corrupt_head(stream);
  return {};
}

}  // namespace mnemo::persistence
