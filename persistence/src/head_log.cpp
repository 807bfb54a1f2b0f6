#include "head_log.hpp"

#include <string>

namespace mnemo::persistence {

namespace {

uint32_t get_be32(const char* p) noexcept {
  auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) |
         (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

// The stream id of entry `i`, or false if it does not fit in the record.
bool entry_at(const char* data, size_t size, uint32_t count, uint32_t i,
              std::string_view& stream) noexcept {
  size_t offset = get_be32(data + 4 + size_t{i} * 4);
  if (offset < 4 + size_t{count} * 4 || offset + 2 > size) return false;
  auto* p = reinterpret_cast<const unsigned char*>(data + offset);
  size_t len = (size_t{p[0]} << 8) | p[1];
  if (len == 0 || offset + 2 + len + 24 > size) return false;
  stream = std::string_view{data + offset + 2, len};
  return true;
}

head_record head_after(std::string_view stream) noexcept {
  auto* p = stream.data() + stream.size();
  head_record h;
  h.highest = get_be64(p);
  h.deleted_to = get_be64(p + 8);
  h.last_position = get_be64(p + 16);
  return h;
}

bool header_ok(const char* data, size_t size, uint32_t& count) noexcept {
  if (size < 4) return false;
  count = get_be32(data);
  return count > 0 && 4 + size_t{count} * 4 <= size;
}

}  // namespace

head_log_lookup find_in_head_log(const char* data, size_t size,
                                 std::string_view stream,
                                 head_record& out) noexcept {
  uint32_t count = 0;
  if (!header_ok(data, size, count)) return head_log_lookup::damaged;
  uint32_t lo = 0;
  uint32_t hi = count;
  while (lo < hi) {
    auto mid = lo + (hi - lo) / 2;
    std::string_view key;
    if (!entry_at(data, size, count, mid, key)) return head_log_lookup::damaged;
    auto cmp = key.compare(stream);
    if (cmp == 0) {
      out = head_after(key);
      return head_log_lookup::found;
    }
    if (cmp < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return head_log_lookup::absent;
}

bool head_log_entries::parse() noexcept {
  uint32_t n = 0;
  if (!header_ok(data, size, n)) return false;
  std::string_view previous;
  for (uint32_t i = 0; i < n; ++i) {
    std::string_view key;
    if (!entry_at(data, size, n, i, key)) return false;
    if (i > 0 && !(previous < key)) return false;
    previous = key;
  }
  count = n;
  return true;
}

std::string_view head_log_entries::stream(uint32_t i) const noexcept {
  std::string_view key;
  entry_at(data, size, count, i, key);
  return key;
}

head_record head_log_entries::head(uint32_t i) const noexcept {
  return head_after(stream(i));
}

error damaged_head_log(uint64_t position) {
  return error{errc::corrupt_record,
               "corrupt journal: the head log record of the commit ending at "
               "global position " +
                   std::to_string(position) +
                   " is damaged, so the heads of the streams it names are "
                   "unknown; restore a backup"};
}

namespace {

// The error for what `visit_head_log` returned.
error log_error(detail::txn_state& st, int rc, uint64_t position) {
  if (rc == MDB_CORRUPTED) return damaged_head_log(position);
  return st.check(rc, "mdb_cursor_get (head log)");
}

}  // namespace

error read_head_log(detail::txn_state& st,
                    std::map<std::string, head_record, std::less<>>& out) {
  if (st.dbs->head_log == 0) return {};
  uint64_t position = 0;
  auto rc = collect_head_log(st.txn, st.dbs->head_log, position, out);
  return log_error(st, rc, position);
}

error find_logged_head(detail::txn_state& st, std::string_view stream,
                       head_record& out, bool& found) {
  found = false;
  if (st.dbs->head_log == 0) return {};
  uint64_t position = 0;
  auto rc = visit_head_log(
      st.txn, st.dbs->head_log, position, [&](const char* data, size_t size) {
        switch (find_in_head_log(data, size, stream, out)) {
          case head_log_lookup::found:
            found = true;
            return log_visit::stop;
          case head_log_lookup::absent:
            return log_visit::next;
          default:
            return log_visit::damaged;
        }
      });
  return log_error(st, rc, position);
}

}  // namespace mnemo::persistence
