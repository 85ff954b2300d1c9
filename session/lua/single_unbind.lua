-- ARGV: prefix, id. Returns the removed binding, or false.
return unbind(ARGV[2]) or false
