# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""OTLP ``ExportTraceServiceRequest`` bytes to span rows in one pass over the protobuf wire format (compiled).

The fast path of :func:`qfleet.collector.decode.decode_body`. Converting a request through upb's Python
messages cost about 20 µs of interpreter time a span, and encoding its attributes as JSON 3 µs more on the
writer's thread; this reads the bytes once, writes the attributes' JSON text as it goes, and builds each row
as one tuple (about 4 µs a span, GIL held; it lets other threads in every 64 spans).

It only recognises the plain request: valid spans whose attributes are strings, integers, finite doubles or
booleans (or unset), within every limit, with distinct keys, and no events, links, NUL characters or scope
attributes. For anything else, including any malformed byte, it answers ``False`` and the caller converts the
request with the full path (upb, then :class:`~qfleet.collector.otlp.AttributeReader`). The full path holds
every rule: rejecting, cutting, truncating, counting, and the error a malformed body gets. So no edge case is
decided twice, and the rows built here equal the full path's; the tests check this on generated requests.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcmp, memcpy


cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL
    int Py_DTSF_ADD_DOT_0


#: The field numbers of each message this module reads, as the ``opentelemetry-proto`` it was written for
#: declares them. The caller compares them with the installed descriptors and uses this module only when
#: they agree: a field added by a newer proto must never be skipped here as unknown while upb reads it.
KNOWN_FIELDS = {
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest": (1,),
    "opentelemetry.proto.trace.v1.ResourceSpans": (1, 2, 3),
    "opentelemetry.proto.resource.v1.Resource": (1, 2, 3),
    "opentelemetry.proto.trace.v1.ScopeSpans": (1, 2, 3),
    "opentelemetry.proto.common.v1.InstrumentationScope": (1, 2, 3, 4),
    "opentelemetry.proto.trace.v1.Span": tuple(range(1, 17)),
    "opentelemetry.proto.trace.v1.Status": (2, 3),
    "opentelemetry.proto.common.v1.KeyValue": (1, 2, 3),
    "opentelemetry.proto.common.v1.AnyValue": (1, 2, 3, 4, 5, 6, 7, 8),
}

cdef enum:  # wire types
    VARINT = 0
    I64 = 1
    LEN = 2
    I32 = 5

# Stored times are signed 64-bit (rows.MAX_NS); dropped counts are INTEGER columns (limits.INT32_MAX).
cdef uint64_t MAX_NS = 9223372036854775807ULL
cdef uint32_t INT32_MAX = 2147483647

cdef const char* HEX = b"0123456789abcdef"


class _Plain(Exception):
    """The request is not the plain case: the full path converts it."""


cdef class _Ctx:
    """What converting one request carries from message to message, and the JSON buffer it reuses."""

    cdef Py_ssize_t max_item, max_len, budget
    cdef object resource
    cdef list rows
    cdef object fingerprint, service
    cdef str scope
    # Promoted keys (rows.PROMOTED_KEYS) as UTF-8, and their values: the span's, else its resource's.
    cdef tuple promoted
    cdef list promoted_utf8
    cdef Py_ssize_t n_promoted
    cdef list span_values, res_values
    # The span's attributes as JSON text, built here.
    cdef char* buf
    cdef Py_ssize_t cap, n
    # The keys of the span's attributes (pointers into the body), to tell duplicates.
    cdef const uint8_t** key_p
    cdef Py_ssize_t* key_n

    def __dealloc__(self):
        PyMem_Free(self.buf)
        PyMem_Free(self.key_p)
        PyMem_Free(self.key_n)


cdef inline const uint8_t* varint(const uint8_t* p, const uint8_t* end, uint64_t* out) except NULL:
    cdef uint64_t r = 0
    cdef int shift = 0
    cdef uint8_t b
    while p < end:
        b = p[0]
        p += 1
        if shift == 63 and b > 1:
            raise _Plain()  # past 64 bits: leave the decision to upb
        r |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = r
            return p
        shift += 7
        if shift > 63:
            break
    raise _Plain()


cdef inline const uint8_t* tag(const uint8_t* p, const uint8_t* end, uint32_t* field, int* wire) except NULL:
    cdef uint64_t t
    p = varint(p, end, &t)
    if t > 0xFFFFFFFF or (t >> 3) == 0:
        raise _Plain()
    field[0] = <uint32_t>(t >> 3)
    wire[0] = <int>(t & 7)
    return p


cdef inline const uint8_t* length(const uint8_t* p, const uint8_t* end, const uint8_t** stop) except NULL:
    """Read a length prefix; ``stop`` gets the end of the field's bytes, which start at the pointer returned."""
    cdef uint64_t n
    p = varint(p, end, &n)
    if n > <uint64_t>(end - p):
        raise _Plain()
    stop[0] = p + n
    return p


cdef inline const uint8_t* skip(const uint8_t* p, const uint8_t* end, int wire) except NULL:
    """Skip a field this module does not read (a number the schema does not know)."""
    cdef uint64_t v
    cdef const uint8_t* stop
    if wire == VARINT:
        return varint(p, end, &v)
    if wire == I64:
        if end - p < 8:
            raise _Plain()
        return p + 8
    if wire == I32:
        if end - p < 4:
            raise _Plain()
        return p + 4
    if wire == LEN:
        length(p, end, &stop)
        return stop
    raise _Plain()  # groups (deprecated) and invalid wire types


ctypedef int (*Parse)(const uint8_t* p, const uint8_t* end, _Ctx c) except -1


cdef int each(const uint8_t* p, const uint8_t* end, uint32_t number, Parse parse, _Ctx c) except -1:
    """Parse every field ``number`` (a message) of the message ``p``..``end`` with ``parse``; skip the others."""
    cdef uint32_t f
    cdef int w
    cdef const uint8_t* stop
    cdef const uint8_t* q
    while p < end:
        p = tag(p, end, &f, &w)
        if f == number:
            want(w, LEN)
            q = length(p, end, &stop)
            parse(q, stop, c)
            p = stop
        else:
            p = skip(p, end, w)
    return 0


cdef const uint8_t* utf8_field(const uint8_t* p, const uint8_t* end, int wire) except NULL:
    """Skip a string field this module does not store, which must still be valid UTF-8 (upb checks it)."""
    cdef const uint8_t* stop
    want(wire, LEN)
    p = length(p, end, &stop)
    PyUnicode_DecodeUTF8(<const char*>p, stop - p, NULL)
    return stop


cdef inline uint64_t le64(const uint8_t* p) noexcept:
    return ((<uint64_t>p[0]) | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16) | (<uint64_t>p[3] << 24)
            | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40) | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef inline uint32_t le32(const uint8_t* p) noexcept:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline void want(int wire, int expected) except *:
    if wire != expected:
        raise _Plain()


cdef inline str text(const uint8_t* p, const uint8_t* stop):
    """A string field: strict UTF-8 (as upb checks it); NUL characters are the full path's to replace."""
    cdef Py_ssize_t n = stop - p
    if n == 0:
        return ""
    if memchr(p, 0, n) != NULL:
        raise _Plain()
    return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)


cdef inline str hex_id(const uint8_t* p, Py_ssize_t n):
    cdef object s = PyUnicode_New(2 * n, 127)
    cdef uint8_t* d = <uint8_t*>PyUnicode_DATA(s)
    cdef Py_ssize_t i
    for i in range(n):
        d[2 * i] = HEX[p[i] >> 4]
        d[2 * i + 1] = HEX[p[i] & 15]
    return <str>s


cdef inline bint all_zero(const uint8_t* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i]:
            return False
    return True


cdef object any_value(const uint8_t* p, const uint8_t* end, Py_ssize_t max_len):
    """An ``AnyValue`` of a scalar kind (the oneof's last field wins, as on the wire); ``None`` when unset."""
    cdef uint32_t f
    cdef int w
    cdef uint64_t v
    cdef const uint8_t* stop
    cdef double d
    cdef object out = None
    cdef str s
    while p < end:
        p = tag(p, end, &f, &w)
        if f == 1:
            want(w, LEN)
            p = length(p, end, &stop)
            s = text(p, stop)
            if len(s) > max_len:
                raise _Plain()  # truncated and counted by the full path
            out = s
            p = stop
        elif f == 2:
            want(w, VARINT)
            p = varint(p, end, &v)
            out = v != 0
        elif f == 3:
            want(w, VARINT)
            p = varint(p, end, &v)
            out = <int64_t>v
        elif f == 4:
            want(w, I64)
            if end - p < 8:
                raise _Plain()
            (<uint64_t*>&d)[0] = le64(p)
            if not isfinite(d):
                raise _Plain()  # stored as text by the full path
            out = d
            p += 8
        elif f <= 8:
            raise _Plain()  # arrays, maps, bytes, string-table indexes
        else:
            p = skip(p, end, w)
    return out


cdef const uint8_t* key_value(const uint8_t* p, const uint8_t* end, const uint8_t** key, Py_ssize_t* key_n,
                              const uint8_t** value, const uint8_t** value_end) except NULL:
    """Read the ``KeyValue`` in the field at ``p``: its key's bytes and its value's (``value`` NULL when unset);
    returns the end of the field."""
    cdef uint32_t g
    cdef int x
    cdef const uint8_t* stop
    cdef const uint8_t* q
    cdef const uint8_t* r
    q = length(p, end, &stop)
    key[0], key_n[0], value[0], value_end[0] = NULL, 0, NULL, NULL
    while q < stop:
        q = tag(q, stop, &g, &x)
        if g == 1:
            want(x, LEN)
            key[0] = length(q, stop, &r)
            key_n[0] = r - key[0]
            q = r
        elif g == 2:
            want(x, LEN)
            if value[0] != NULL:
                raise _Plain()  # a repeated message field merges: upb's job
            value[0] = length(q, stop, value_end)
            q = value_end[0]
        elif g == 3:
            raise _Plain()  # a key from a string table
        else:
            q = skip(q, stop, x)
    return stop


cdef Py_ssize_t attributes(const uint8_t* p, const uint8_t* end, uint32_t number, dict out,
                           _Ctx c) except -1:
    """Read every ``KeyValue`` field numbered ``number`` of a message into ``out``; returns how many."""
    cdef uint32_t f
    cdef int w
    cdef const uint8_t* key
    cdef const uint8_t* val
    cdef const uint8_t* val_end
    cdef Py_ssize_t key_n, n = 0
    while p < end:
        p = tag(p, end, &f, &w)
        if f != number:
            p = skip(p, end, w)
            continue
        want(w, LEN)
        p = key_value(p, end, &key, &key_n, &val, &val_end)
        out[text(key, key + key_n)] = any_value(val, val_end, c.max_len) if val != NULL else None
        n += 1
    if n > c.max_item or n > c.budget:
        raise _Plain()  # cut and counted by the full path
    c.budget -= n
    return n


cdef Py_ssize_t utf8_length(const uint8_t* p, Py_ssize_t n) noexcept:
    """Code points in ``p[:n]``, or -1 unless it is strict UTF-8 (what upb and CPython accept)."""
    cdef Py_ssize_t i = 0, count = 0
    cdef uint8_t b, lo, hi
    while i < n:
        b = p[i]
        if b < 0x80:
            i += 1
        elif b < 0xC2:
            return -1
        elif b < 0xE0:
            if i + 1 >= n or (p[i + 1] & 0xC0) != 0x80:
                return -1
            i += 2
        elif b < 0xF0:
            lo, hi = (0xA0 if b == 0xE0 else 0x80), (0x9F if b == 0xED else 0xBF)
            if i + 2 >= n or p[i + 1] < lo or p[i + 1] > hi or (p[i + 2] & 0xC0) != 0x80:
                return -1
            i += 3
        elif b < 0xF5:
            lo, hi = (0x90 if b == 0xF0 else 0x80), (0x8F if b == 0xF4 else 0xBF)
            if (i + 3 >= n or p[i + 1] < lo or p[i + 1] > hi or (p[i + 2] & 0xC0) != 0x80
                    or (p[i + 3] & 0xC0) != 0x80):
                return -1
            i += 4
        else:
            return -1
        count += 1
    return count


cdef int reserve(_Ctx c, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char* grown
    if c.n + extra <= c.cap:
        return 0
    cap = max(2 * c.cap, c.n + extra, 1024)
    grown = <char*>PyMem_Realloc(c.buf, cap)
    if grown == NULL:
        raise MemoryError()
    c.buf, c.cap = grown, cap
    return 0


cdef inline int put(_Ctx c, const char* p, Py_ssize_t n) except -1:
    reserve(c, n)
    memcpy(c.buf + c.n, p, n)
    c.n += n
    return 0


cdef int put_string(_Ctx c, const uint8_t* p, Py_ssize_t n) except -1:
    """``p[:n]`` (valid UTF-8) as a JSON string: quote, backslash and control characters escaped."""
    cdef Py_ssize_t i
    cdef uint8_t b
    cdef char* o
    reserve(c, 6 * n + 2)
    o = c.buf + c.n
    o[0] = 34
    o += 1
    for i in range(n):
        b = p[i]
        if b >= 0x20 and b != 34 and b != 92:
            o[0] = b
            o += 1
        elif b == 34 or b == 92:
            o[0], o[1] = 92, b
            o += 2
        elif b == 10 or b == 9 or b == 13 or b == 8 or b == 12:
            o[0] = 92
            o[1] = (b"n" if b == 10 else b"t" if b == 9 else b"r" if b == 13 else b"b" if b == 8 else b"f")[0]
            o += 2
        else:
            o[0], o[1], o[2], o[3], o[4], o[5] = 92, 117, 48, 48, HEX[b >> 4], HEX[b & 15]
            o += 6
    o[0] = 34
    c.n = o + 1 - c.buf
    return 0


cdef int json_value(const uint8_t* p, const uint8_t* end, _Ctx c, Py_ssize_t promoted) except -1:
    """An ``AnyValue`` of a scalar kind as JSON (the oneof's last field wins, as on the wire); ``null`` when
    unset. When ``promoted`` >= 0 the value's ``str()`` goes to that promoted column too."""
    cdef uint32_t f
    cdef int w
    cdef uint64_t v
    cdef const uint8_t* stop
    cdef const uint8_t* s = NULL
    cdef Py_ssize_t s_n = 0, chars
    cdef double d
    cdef int kind = 0
    cdef char num[32]
    cdef char* repr
    cdef int k
    while p < end:
        p = tag(p, end, &f, &w)
        if f == 1:
            want(w, LEN)
            s = length(p, end, &stop)
            s_n = stop - s
            p = stop
            kind = 1
        elif f == 2 or f == 3:
            want(w, VARINT)
            p = varint(p, end, &v)
            kind = f
        elif f == 4:
            want(w, I64)
            if end - p < 8:
                raise _Plain()
            (<uint64_t*>&d)[0] = le64(p)
            p += 8
            kind = 4
        elif f <= 8:
            raise _Plain()  # arrays, maps, bytes, string-table indexes
        else:
            p = skip(p, end, w)
    if kind == 0:
        put(c, "null", 4)
        return 0  # promoted: None, so the resource's value applies (rows.promoted)
    if kind == 1:
        chars = utf8_length(s, s_n)
        if chars < 0 or chars > c.max_len or (s_n and memchr(s, 0, s_n) != NULL):
            raise _Plain()  # upb refuses the request, or the full path truncates or replaces (and counts)
        put_string(c, s, s_n)
        if promoted >= 0:
            c.span_values[promoted] = PyUnicode_DecodeUTF8(<const char*>s, s_n, NULL)
    elif kind == 2:
        put(c, "true" if v else "false", 4 if v else 5)
        if promoted >= 0:
            c.span_values[promoted] = "True" if v else "False"
    elif kind == 3:
        k = snprintf(num, 32, "%lld", <long long><int64_t>v)
        put(c, num, k)
        if promoted >= 0:
            c.span_values[promoted] = PyUnicode_DecodeUTF8(num, k, NULL)
    else:
        if not isfinite(d):
            raise _Plain()  # stored as text by the full path
        repr = PyOS_double_to_string(d, b"r", 0, Py_DTSF_ADD_DOT_0, NULL)  # float.__repr__, as json writes it
        try:
            k = len(<bytes>repr)
            put(c, repr, k)
            if promoted >= 0:
                c.span_values[promoted] = PyUnicode_DecodeUTF8(repr, k, NULL)
        finally:
            PyMem_Free(repr)
    return 0


cdef str json_attributes(const uint8_t* p, const uint8_t* end, _Ctx c):
    """The span's attributes (its ``KeyValue`` fields 9) as the JSON text of an object, in wire order."""
    cdef uint32_t f
    cdef int w
    cdef const uint8_t* key
    cdef const uint8_t* val
    cdef const uint8_t* val_end
    cdef Py_ssize_t key_n, count = 0, i, promoted
    cdef bytes pk
    c.n = 0
    put(c, "{", 1)
    while p < end:
        p = tag(p, end, &f, &w)
        if f != 9:
            p = skip(p, end, w)
            continue
        want(w, LEN)
        p = key_value(p, end, &key, &key_n, &val, &val_end)
        if count >= c.max_item or count >= c.budget:
            raise _Plain()  # cut and counted by the full path
        if utf8_length(key, key_n) < 0 or (key_n and memchr(key, 0, key_n) != NULL):
            raise _Plain()
        for i in range(count):  # a repeated key: JSON readers differ on which value wins
            if c.key_n[i] == key_n and memcmp(c.key_p[i], key, key_n) == 0:
                raise _Plain()
        c.key_p[count], c.key_n[count] = key, key_n
        if count:
            put(c, ",", 1)
        put_string(c, key, key_n)
        put(c, ":", 1)
        promoted = -1
        for i in range(c.n_promoted):
            pk = <bytes>c.promoted_utf8[i]
            if len(pk) == key_n and memcmp(<const char*>pk, key, key_n) == 0:
                promoted = i
                break
        json_value(val, val_end, c, promoted)
        count += 1
    put(c, "}", 1)
    c.budget -= count
    return PyUnicode_DecodeUTF8(c.buf, c.n, NULL)



cdef int span(const uint8_t* p, const uint8_t* end, _Ctx c) except -1:
    cdef const uint8_t* start_p = p
    cdef uint32_t f, g
    cdef int w, x
    cdef uint64_t v
    cdef const uint8_t* stop
    cdef const uint8_t* q
    cdef const uint8_t* r
    cdef const uint8_t* trace_id = NULL
    cdef const uint8_t* span_id = NULL
    cdef const uint8_t* parent = NULL
    cdef Py_ssize_t trace_n = 0, span_n = 0, parent_n = 0
    cdef uint64_t start = 0, finish = 0
    cdef int32_t kind = 0, code = 0
    cdef uint32_t flags = 0, d_attrs = 0, d_events = 0, d_links = 0
    cdef bint has_attrs = False, has_status = False
    cdef str name = "", trace_state = "", message = ""
    while p < end:
        p = tag(p, end, &f, &w)
        if f == 1 or f == 2 or f == 4:
            want(w, LEN)
            q = length(p, end, &stop)
            if f == 1:
                trace_id, trace_n = q, stop - q
            elif f == 2:
                span_id, span_n = q, stop - q
            else:
                parent, parent_n = q, stop - q
            p = stop
        elif f == 3 or f == 5:
            want(w, LEN)
            q = length(p, end, &stop)
            if f == 3:
                trace_state = text(q, stop)
            else:
                name = text(q, stop)
            p = stop
        elif f == 6 or f == 10 or f == 12 or f == 14:
            want(w, VARINT)
            p = varint(p, end, &v)
            if f == 6:
                kind = <int32_t>v  # an int32 enum keeps the low 32 bits
            elif f == 10:
                d_attrs = <uint32_t>v
            elif f == 12:
                d_events = <uint32_t>v
            else:
                d_links = <uint32_t>v
        elif f == 7 or f == 8:
            want(w, I64)
            if end - p < 8:
                raise _Plain()
            if f == 7:
                start = le64(p)
            else:
                finish = le64(p)
            p += 8
        elif f == 9:
            has_attrs = True
            p = skip(p, end, w)  # read below, in one pass over the span's attributes, once the span is valid
        elif f == 15:
            want(w, LEN)
            if has_status:
                raise _Plain()
            has_status = True
            q = length(p, end, &stop)
            while q < stop:
                q = tag(q, stop, &g, &x)
                if g == 2:
                    want(x, LEN)
                    q = length(q, stop, &r)
                    message = text(q, r)
                    q = r
                elif g == 3:
                    want(x, VARINT)
                    q = varint(q, stop, &v)
                    code = <int32_t>v
                else:
                    q = skip(q, stop, x)
            p = stop
        elif f == 16:
            want(w, I32)
            if end - p < 4:
                raise _Plain()
            flags = le32(p)
            p += 4
        elif f == 11 or f == 13:
            raise _Plain()  # events and links
        else:
            p = skip(p, end, w)
    # The checks of span_rows._span_problem; a span they refuse is the full path's to reject and describe.
    if trace_n != 16 or all_zero(trace_id, 16) or span_n != 8 or all_zero(span_id, 8):
        raise _Plain()
    if parent_n != 0 and parent_n != 8:
        raise _Plain()
    if start == 0 or finish < start or finish > MAX_NS:
        raise _Plain()
    if kind < 0 or kind > 5 or code < 0 or code > 2:
        raise _Plain()
    if d_attrs > INT32_MAX or d_events > INT32_MAX or d_links > INT32_MAX:
        raise _Plain()
    cdef Py_ssize_t i
    for i in range(c.n_promoted):
        c.span_values[i] = None
    cdef str attrs = json_attributes(start_p, end, c) if has_attrs else "{}"
    cdef object fields = (hex_id(trace_id, 16), hex_id(span_id, 8), hex_id(parent, 8) if parent_n else None,
                          c.fingerprint, c.service, c.scope, name, kind, start, finish, finish - start, code,
                          message, trace_state, flags, attrs, d_attrs, d_events, d_links)
    cdef Py_ssize_t base = len(fields)
    cdef object row = PyTuple_New(base + c.n_promoted)
    cdef object item
    for i in range(base):
        item = fields[i]
        Py_INCREF(item)
        PyTuple_SET_ITEM(row, i, item)
    for i in range(c.n_promoted):
        item = c.span_values[i]
        if item is None:
            item = c.res_values[i]
        Py_INCREF(item)
        PyTuple_SET_ITEM(row, base + i, item)
    c.rows.append(row)
    if len(c.rows) % 64 == 0:
        with nogil:  # let the writer thread, waiting to get back from SQLite, take the interpreter
            pass
    return 0


cdef int scope_spans(const uint8_t* p, const uint8_t* end, _Ctx c) except -1:
    cdef const uint8_t* begin = p
    cdef const uint8_t* r
    cdef const uint8_t* stop
    cdef const uint8_t* q
    cdef uint32_t f, g
    cdef int w, x
    cdef bint has_scope = False
    cdef str scope = ""
    # First the scope, wherever it is in the message (fields may come in any order), then the spans.
    while p < end:
        p = tag(p, end, &f, &w)
        if f == 1:
            want(w, LEN)
            if has_scope:
                raise _Plain()
            has_scope = True
            q = length(p, end, &stop)
            while q < stop:
                q = tag(q, stop, &g, &x)
                if g == 1 or g == 2:  # name; the version is not stored, but it must be valid UTF-8
                    want(x, LEN)
                    q = length(q, stop, &r)
                    if g == 1:
                        scope = text(q, r)
                    else:
                        PyUnicode_DecodeUTF8(<const char*>q, r - q, NULL)
                    q = r
                elif g == 3:
                    raise _Plain()  # scope attributes: not stored, but upb checks them
                else:
                    q = skip(q, stop, x)
            p = stop
        elif f == 3:
            p = utf8_field(p, end, w)  # schema_url
        else:
            p = skip(p, end, w)
    c.scope = scope
    return each(begin, end, 2, span, c)


cdef int resource_spans(const uint8_t* p, const uint8_t* end, _Ctx c) except -1:
    cdef Py_ssize_t i
    cdef const uint8_t* begin = p
    cdef const uint8_t* stop
    cdef const uint8_t* q
    cdef const uint8_t* res = NULL
    cdef const uint8_t* res_end = NULL
    cdef uint32_t f, g
    cdef int w, x
    while p < end:
        p = tag(p, end, &f, &w)
        if f == 1:
            want(w, LEN)
            if res != NULL:
                raise _Plain()
            res = length(p, end, &res_end)
            p = res_end
        elif f == 3:
            p = utf8_field(p, end, w)  # schema_url
        else:
            p = skip(p, end, w)
    cdef dict attrs = {}
    if res != NULL:
        q = res
        while q < res_end:
            q = tag(q, res_end, &g, &x)
            if g == 1:
                want(x, LEN)
            elif g == 2:
                want(x, VARINT)
            elif g == 3:
                raise _Plain()  # entity references
            q = skip(q, res_end, x)
        attributes(res, res_end, 1, attrs, c)
    row = c.resource(attrs)
    c.fingerprint = row.fingerprint
    c.service = row.service_name
    for i in range(c.n_promoted):
        value = row.attributes.get(c.promoted[i])
        c.res_values[i] = None if value is None else str(value)
    return each(begin, end, 2, scope_spans, c)


def span_rows(bytes body, Py_ssize_t max_attributes_per_item, Py_ssize_t max_attribute_value_length,
              Py_ssize_t max_attributes_per_request, tuple promoted_keys, object resource, list rows):
    """Append to ``rows`` the span rows of an ``ExportTraceServiceRequest``, if it is the plain case.

    ``resource(attributes)`` returns the :class:`~qfleet.collector.rows.ResourceRow` of each resource (and
    records it in the caller's batch). Returns False, with ``rows`` holding a prefix to discard, when the
    request needs the full path.
    """
    cdef _Ctx c = _Ctx()
    c.max_item = max_attributes_per_item
    c.max_len = max_attribute_value_length
    c.budget = max_attributes_per_request
    c.promoted = promoted_keys
    c.promoted_utf8 = [k.encode() for k in promoted_keys]
    c.n_promoted = len(promoted_keys)
    c.span_values = [None] * c.n_promoted
    c.res_values = [None] * c.n_promoted
    c.resource = resource
    c.rows = rows
    c.key_p = <const uint8_t**>PyMem_Malloc((max_attributes_per_item + 1) * sizeof(uint8_t*))
    c.key_n = <Py_ssize_t*>PyMem_Malloc((max_attributes_per_item + 1) * sizeof(Py_ssize_t))
    if c.key_p == NULL or c.key_n == NULL:
        raise MemoryError()
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(body)
    try:
        each(p, p + PyBytes_GET_SIZE(body), 1, resource_spans, c)
    except (_Plain, UnicodeDecodeError):
        return False
    return True
