#include <xjob/detail/npy.hpp>

#include <cctype>
#include <cstring>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include <xjob/detail/shape.hpp>
#include <xjob/errors.hpp>

namespace xjob::detail {

namespace {

constexpr char magic[] = "\x93NUMPY";
constexpr std::size_t magic_bytes = 6;
constexpr std::size_t alignment = 64;  // NumPy's ARRAY_ALIGN

std::string shape_literal(std::span<std::size_t const> shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

// A reader of the Python literal dict in the header, just enough of Python's
// syntax for what NumPy writes.
class literal_reader {
 public:
  literal_reader(std::filesystem::path const& path, std::string_view text) : path_(path), text_(text) {}

  [[noreturn]] void fail(std::string const& what) const {
    throw npy_error(path_, fmt::format("malformed .npy header ({}) in {}", what, text_));
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool accept(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) fail(fmt::format("expected '{}' at offset {}", c, pos_));
  }
  std::string string() {
    skip_space();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) fail("expected a string");
    char const quote = text_[pos_++];
    std::size_t const end = text_.find(quote, pos_);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string value(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return value;
  }
  bool boolean() {
    skip_space();
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<std::size_t> shape() {
    expect('(');
    std::vector<std::size_t> dims;
    while (!accept(')')) {
      skip_space();
      std::size_t value = 0;
      std::size_t digits = 0;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
        std::size_t const digit = static_cast<std::size_t>(text_[pos_++] - '0');
        if (value > (std::numeric_limits<std::size_t>::max() - digit) / 10) fail("shape extent overflows");
        value = value * 10 + digit;
        ++digits;
      }
      if (digits == 0) fail("expected a non-negative shape extent");
      accept('L');  // Python 2 long literals
      dims.push_back(value);
      if (!accept(',')) {
        expect(')');
        break;
      }
    }
    return dims;
  }

 private:
  std::filesystem::path const& path_;
  std::string_view text_;
  std::size_t pos_ = 0;
};

std::size_t read_le(std::span<std::byte const> bytes, std::size_t offset, std::size_t width) {
  std::size_t value = 0;
  for (std::size_t i = 0; i < width; ++i)
    value |= static_cast<std::size_t>(std::to_integer<unsigned char>(bytes[offset + i])) << (8 * i);
  return value;
}

// '=' is native order (little-endian here); one-byte types ignore order.
std::string normalized_descr(std::string descr) {
  if (descr.size() >= 2 && descr[0] == '=') descr[0] = '<';
  if (descr.size() == 3 && descr[2] == '1' && (descr[0] == '<' || descr[0] == '>')) descr[0] = '|';
  return descr;
}

}  // namespace

std::string npy_header(std::string_view descr, std::span<std::size_t const> shape) {
  std::string dict =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, shape_literal(shape));
  // Version 1.0 has a 2-byte length; very long shapes need 2.0's 4 bytes.
  std::size_t prefix = magic_bytes + 2 + 2;
  char major = 1;
  if (dict.size() + 1 + prefix + alignment > 65535) {
    prefix = magic_bytes + 2 + 4;
    major = 2;
  }
  std::size_t const total = (prefix + dict.size() + 1 + alignment - 1) / alignment * alignment;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::size_t const dict_bytes = dict.size();

  std::string header(magic, magic_bytes);
  header.push_back(major);
  header.push_back(0);
  for (std::size_t i = 0; i < prefix - magic_bytes - 2; ++i)
    header.push_back(static_cast<char>((dict_bytes >> (8 * i)) & 0xff));
  header += dict;
  return header;
}

npy_header_info parse_npy_header(std::filesystem::path const& path, std::span<std::byte const> bytes) {
  if (bytes.size() < magic_bytes + 4 || std::memcmp(bytes.data(), magic, magic_bytes) != 0)
    throw npy_error(path, "not a .npy file (the magic string \\x93NUMPY is missing)");
  int const major = std::to_integer<int>(bytes[6]);
  std::size_t length_bytes = 0;
  if (major == 1) length_bytes = 2;
  else if (major == 2 || major == 3) length_bytes = 4;
  else throw npy_error(path, fmt::format("unsupported .npy format version {}.{}", major, std::to_integer<int>(bytes[7])));
  std::size_t const prefix = magic_bytes + 2 + length_bytes;
  if (bytes.size() < prefix) throw npy_error(path, "the .npy header is truncated");
  std::size_t const dict_bytes = read_le(bytes, magic_bytes + 2, length_bytes);
  if (bytes.size() < prefix + dict_bytes)
    throw npy_error(path, fmt::format("the .npy header is truncated: it claims {} bytes, the file has {}",
                                      prefix + dict_bytes, bytes.size()));
  std::string_view const text(reinterpret_cast<char const*>(bytes.data()) + prefix, dict_bytes);

  literal_reader reader(path, text);
  npy_header_info info;
  info.data_offset = prefix + dict_bytes;
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<std::vector<std::size_t>> shape;
  reader.expect('{');
  while (!reader.accept('}')) {
    std::string const key = reader.string();
    reader.expect(':');
    if (key == "descr") {
      reader.skip_space();
      if (reader.accept('[')) throw npy_error(path, "structured dtypes are not supported");
      descr = reader.string();
    } else if (key == "fortran_order") {
      fortran_order = reader.boolean();
    } else if (key == "shape") {
      shape = reader.shape();
    } else {
      reader.fail(fmt::format("unexpected key '{}'", key));
    }
    if (!reader.accept(',')) {
      reader.expect('}');
      break;
    }
  }
  if (!descr || !fortran_order || !shape) reader.fail("'descr', 'fortran_order' and 'shape' are all required");
  info.descr = normalized_descr(*descr);
  info.fortran_order = *fortran_order;
  info.shape = std::move(*shape);
  return info;
}

void check_npy_layout(std::filesystem::path const& path, npy_header_info const& info,
                      std::string_view expected_descr, std::size_t element_bytes, std::size_t file_bytes) {
  if (info.descr != expected_descr)
    throw npy_error(path, fmt::format("dtype '{}' does not match the array's element type ('{}')", info.descr,
                                      expected_descr));
  if (info.fortran_order)
    throw npy_error(path, "Fortran-ordered arrays are not supported (save it with numpy.ascontiguousarray)");
  std::size_t data_bytes = 0;
  try {
    data_bytes = checked_byte_count(info.shape, element_bytes);
  } catch (invalid_argument const&) {
    throw npy_error(path, fmt::format("shape {} is too large", format_shape(info.shape)));
  }
  if (file_bytes < info.data_offset || file_bytes - info.data_offset < data_bytes)
    throw npy_error(path, fmt::format("the file is truncated: shape {} needs {} bytes of data after the {}-byte "
                                      "header, the file has {} bytes in all",
                                      format_shape(info.shape), data_bytes, info.data_offset, file_bytes));
}

}  // namespace xjob::detail
