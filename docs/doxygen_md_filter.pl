#!/usr/bin/perl
# Doxygen input filter for the Markdown pages of docs/ (FILTER_PATTERNS in Doxyfile.in), so that
# the pages written for GitHub render as Doxygen related pages:
# - math: $$...$$ -> \f[...\f] and $...$ -> \f$...\f$ (rendered by MathJax);
# - anchors: every heading gets an explicit id <page>_<github-slug> (GitHub derives the same slug
#   implicitly), and links "(#slug)" and "(page.md#slug)" point to those ids.
# Usage (by Doxygen): perl doxygen_md_filter.pl <file.md>
use strict;
use warnings;

my $path = $ARGV[0];
my ($page) = $path =~ m{([^/\\]+)\.md$};
$page = lc($page // 'page');
$page =~ s/[^a-z0-9]/_/g;

sub slug {
  my ($text) = @_;
  $text = lc $text;
  $text =~ s/[^\w\- ]//g;
  $text =~ s/ /-/g;
  $text =~ s/-/_/g;
  return $text;
}

local $/;
open(my $fh, '<', $path) or die "doxygen_md_filter: cannot read $path: $!";
my $t = <$fh>;
close $fh;

# Headings (outside fenced code blocks): the first one names the page, the others its sections.
my @out;
my $fenced = 0;
my $first = 1;
for my $line (split /\n/, $t, -1) {
  $fenced = !$fenced if $line =~ /^```/;
  if (!$fenced && $line =~ /^(#+)\s+(.*?)\s*$/ && $line !~ /\{#[\w-]+\}\s*$/) {
    my ($hashes, $title) = ($1, $2);
    my $id = $first ? "md_$page" : "${page}_" . slug($title);
    $line = "$hashes $title {#$id}";
    $first = 0;
  }
  push @out, $line;
}
$t = join("\n", @out);

# Links: same-page anchors and anchors on other pages.
$t =~ s{\]\(#([\w-]+)\)}{"](#${page}_" . slug($1) . ")"}ge;
$t =~ s{\]\(([\w]+)\.md#([\w-]+)\)}{my ($p, $a) = (lc $1, $2); $p =~ s/[^a-z0-9]/_/g; "](#${p}_" . slug($a) . ")"}ge;
$t =~ s{\]\(([\w]+)\.md\)}{my $p = lc $1; $p =~ s/[^a-z0-9]/_/g; "](#md_$p)"}ge;

# Math: display first, then inline (an inline formula may wrap onto the next line).
$t =~ s/\$\$(.+?)\$\$/\\f[$1\\f]/gs;
$t =~ s/(?<![\\\w])\$((?:[^\$\n]|\n(?!\n))+?)\$/\\f\$$1\\f\$/g;

print $t;
